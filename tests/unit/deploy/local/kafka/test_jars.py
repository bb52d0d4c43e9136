"""The jar cache: where it lives, when it is complete, how a Maven failure reads."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from deploy.local.kafka.errors import KafkaSetupError
from deploy.local.kafka.jars import (
    KAFKA_VERSION,
    MARKER_NAME,
    POM_PATH,
    ensure_kafka_jars,
    kafka_cache_dir,
    libs_complete,
    marker_text,
)


def test_cache_dir_defaults_to_home_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LOGORHYTHMS_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert kafka_cache_dir() == tmp_path / ".cache" / "logorhythms" / f"kafka-{KAFKA_VERSION}"


def test_cache_dir_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LOGORHYTHMS_CACHE_DIR", str(tmp_path / "c"))
    assert kafka_cache_dir() == tmp_path / "c" / f"kafka-{KAFKA_VERSION}"


def _complete_libs(cache: Path) -> Path:
    libs = cache / "libs"
    libs.mkdir(parents=True)
    (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").write_bytes(b"")
    (libs / MARKER_NAME).write_text(marker_text(), encoding="utf-8")
    return libs


def test_ensure_jars_returns_complete_cache_without_maven(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    libs = _complete_libs(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no mvn anywhere
    messages: list[str] = []
    assert ensure_kafka_jars(tmp_path, progress=messages.append) == libs
    assert messages == []


def test_ensure_jars_without_maven_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(KafkaSetupError, match=r"mvn.*not on PATH") as info:
        ensure_kafka_jars(tmp_path, progress=lambda _: None)
    assert "Install Maven" in str(info.value)
    assert not (tmp_path / "libs").exists()


def test_ensure_jars_reports_maven_failure_with_its_output(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_mvn = bin_dir / "mvn"
    fake_mvn.write_text(
        "#!/bin/sh\necho '[INFO] Scanning for projects...'\n"
        "echo '[ERROR] Could not transfer artifact: Network is unreachable'\nexit 1\n"
    )
    fake_mvn.chmod(fake_mvn.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    messages: list[str] = []

    with pytest.raises(KafkaSetupError, match="failed") as info:
        ensure_kafka_jars(tmp_path / "cache", progress=messages.append)

    assert "Network is unreachable" in str(info.value)
    assert "repo.maven.apache.org" in str(info.value)
    assert any("Downloading Kafka" in m for m in messages)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [".lock"]  # no leftovers


def test_stale_marker_is_not_complete(tmp_path: Path) -> None:
    libs = _complete_libs(tmp_path)
    (libs / MARKER_NAME).write_text("kafka=0.0.1\n", encoding="utf-8")
    assert not libs_complete(libs)


def test_pom_and_code_agree_on_the_kafka_version() -> None:
    pom = POM_PATH.read_text(encoding="utf-8")
    assert f"<kafka.version>{KAFKA_VERSION}</kafka.version>" in pom
    assert POM_PATH.is_file()
