"""Which journal each worker owns, and which journals are left for worker 0 to replay."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from proxy.errors import ConfigError
from proxy.journal_ownership import journal_dir, orphaned_journals
from proxy.settings import ProxySettings, parse_workers


def settings(journal: Path, workers: int) -> ProxySettings:
    base = ProxySettings.from_env({"OPENAI_BASE_URL": "http://upstream/v1"})
    return ProxySettings(
        providers=base.providers, journal_dir=str(journal), workers=workers, port=8080
    )


def journal(directory: Path, *, segments: int = 1) -> Path:
    directory.mkdir(parents=True)
    (directory / "topic").write_text("t\n")
    for number in range(1, segments + 1):
        (directory / f"{number:020d}.seg").write_bytes(b"x")
    return directory


def test_one_worker_keeps_the_directory_itself_and_several_get_one_each(tmp_path: Path) -> None:
    assert journal_dir(settings(tmp_path, 1), 0) == tmp_path
    assert journal_dir(settings(tmp_path, 3), 2) == tmp_path / "worker-2"


def test_fewer_workers_adopt_the_journals_of_the_missing_ones(tmp_path: Path) -> None:
    for index in range(4):
        journal(tmp_path / f"worker-{index}")
    journal(tmp_path / "worker-5", segments=0)  # drained already: nothing to adopt
    (tmp_path / "worker-x").mkdir()  # not ours
    expected = [tmp_path / "worker-2", tmp_path / "worker-3"]
    assert orphaned_journals(settings(tmp_path, 2)) == expected
    assert orphaned_journals(settings(tmp_path, 4)) == []


def test_one_worker_adopts_every_worker_journal(tmp_path: Path) -> None:
    journal(tmp_path / "worker-0")
    journal(tmp_path / "worker-1")
    (tmp_path / "00000000000000000001.seg").write_bytes(b"x")  # its own: not an orphan
    expected = [tmp_path / "worker-0", tmp_path / "worker-1"]
    assert orphaned_journals(settings(tmp_path, 1)) == expected


def test_several_workers_adopt_the_single_proxys_journal(tmp_path: Path) -> None:
    assert orphaned_journals(settings(tmp_path, 2)) == []
    (tmp_path / "00000000000000000003.seg").write_bytes(b"x")
    assert orphaned_journals(settings(tmp_path, 2)) == [tmp_path]


def test_worker_counts_parse_and_auto_is_the_usable_cpus() -> None:
    assert parse_workers("3", "--workers") == 3
    assert parse_workers(" AUTO ", "--workers") == len(os.sched_getaffinity(0))
    env = {"OPENAI_BASE_URL": "http://upstream/v1", "LOGORHYTHMS_WORKERS": "2"}
    assert ProxySettings.from_env(env).workers == 2
    assert ProxySettings.from_env({"OPENAI_BASE_URL": "http://upstream/v1"}).workers == 1


@pytest.mark.parametrize("raw", ["0", "-1", "two", ""])
def test_a_worker_count_that_is_not_a_count_says_what_to_set(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"LOGORHYTHMS_WORKERS=.* or auto"):
        parse_workers(raw, "LOGORHYTHMS_WORKERS")


def test_several_workers_need_a_fixed_port(tmp_path: Path) -> None:
    base = settings(tmp_path, 1)
    with pytest.raises(ConfigError, match="fixed port"):
        ProxySettings(providers=base.providers, workers=2, port=0)
