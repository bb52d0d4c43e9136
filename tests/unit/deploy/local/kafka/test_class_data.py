"""The AppCDS archive: its key, its flags, and which dumps are kept."""

from __future__ import annotations

from pathlib import Path

from deploy.local.kafka.class_data import cds_archive_path, class_data_args
from deploy.local.kafka.jars import MARKER_NAME, marker_text


def _libs_and_java(tmp_path: Path) -> tuple[Path, str]:
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / MARKER_NAME).write_text(marker_text(), encoding="utf-8")
    java = tmp_path / "java"
    java.write_bytes(b"#!")
    return libs, str(java)


def test_cds_archive_path_is_stable_and_keyed_on_jars(tmp_path: Path) -> None:
    libs, java = _libs_and_java(tmp_path)
    first = cds_archive_path(java, libs)
    assert first == cds_archive_path(java, libs)
    assert first.parent == tmp_path / "cds"
    (libs / MARKER_NAME).write_text("other", encoding="utf-8")
    assert cds_archive_path(java, libs) != first


def test_without_an_archive_the_broker_dumps_one_and_a_one_shot_tool_does_not(
    tmp_path: Path,
) -> None:
    libs, java = _libs_and_java(tmp_path)
    assert class_data_args(java, libs, dump=False) == ([], None)
    flags, dump = class_data_args(java, libs, dump=True)
    assert dump is not None
    assert dump.archive == cds_archive_path(java, libs)
    assert f"-XX:ArchiveClassesAtExit={dump.partial}" in flags
    assert dump.partial.parent.is_dir()


def test_an_existing_archive_is_mapped_not_dumped_again(tmp_path: Path) -> None:
    libs, java = _libs_and_java(tmp_path)
    archive = cds_archive_path(java, libs)
    archive.parent.mkdir()
    archive.write_bytes(b"jsa")
    assert class_data_args(java, libs, dump=True) == ([f"-XX:SharedArchiveFile={archive}"], None)


def test_a_complete_dump_replaces_older_archives(tmp_path: Path) -> None:
    libs, java = _libs_and_java(tmp_path)
    _, dump = class_data_args(java, libs, dump=True)
    assert dump is not None
    older = dump.archive.with_name("kafka-0123456789abcdef.jsa")
    older.write_bytes(b"old jdk")
    dump.partial.write_bytes(b"classes")

    dump.finish(complete=True)

    assert dump.archive.read_bytes() == b"classes"
    assert sorted(p.name for p in dump.archive.parent.iterdir()) == [dump.archive.name]


def test_an_incomplete_dump_is_discarded(tmp_path: Path) -> None:
    libs, java = _libs_and_java(tmp_path)
    _, dump = class_data_args(java, libs, dump=True)
    assert dump is not None
    dump.partial.write_bytes(b"truncated")

    dump.finish(complete=False)

    assert list(dump.archive.parent.iterdir()) == []
