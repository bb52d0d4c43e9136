"""The export commands' arguments: S3 options wherever an s3:// location is taken; `--staging`
only for a bucket; an endpoint URL holding credentials refused without being echoed; dataset
options out of range refused before anything is made."""

from __future__ import annotations

import fcntl
from pathlib import Path

import pytest

from deploy.cli import build_parser


def test_s3_options_exist_where_an_s3_location_is_taken() -> None:
    for command in (
        ["archive", "s3://b/p"],
        ["restore", "s3://b/p"],
        ["export", "verify", "s3://b/p"],
        ["export", "legal", "s3://b/p", "--case", "C"],
        ["export", "dataset", "s3://b/p"],
    ):
        args = build_parser().parse_args([*command, "--s3-endpoint", "http://h:9000"])
        assert args.s3_endpoint == "http://h:9000"
        assert args.s3_region is None


def test_staging_is_refused_for_a_directory_destination(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["export", "dataset", "out", "--staging", "stage"])
    assert args.func(args) == 2
    said = capsys.readouterr().err
    assert "--staging is for s3:// destinations" in said
    assert said.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # nothing made


def test_a_dataset_endpoint_with_credentials_is_refused_unechoed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    secret = "planted-secret-9d2f"
    args = build_parser().parse_args(
        ["export", "dataset", "s3://b/p", "--s3-endpoint", f"http://KEYID:{secret}@h:9000"]
    )
    assert args.func(args) == 2
    said = capsys.readouterr().err
    assert "the S3 endpoint URL holds credentials" in said
    assert said.count("\n") == 1
    assert secret not in said
    assert not (tmp_path / "cache").exists()  # refused before any staging directory


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--near-dup-threshold", "1.5"], "--near-dup-threshold must be in (0, 1)"),
        (["--near-dup-threshold", "0"], "--near-dup-threshold must be in (0, 1)"),
        (["--min-turns", "0"], "--min-turns must be at least 1"),
    ],
)
def test_out_of_range_dataset_options_are_refused_before_anything_is_made(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    said: str,
) -> None:
    # Checked with the other options: refused after the fold had run and DEST/.state was made,
    # the rerun with a corrected value was refused as "another export's arguments".
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(
        ["export", "dataset", "out", "--clickhouse", f"chdb://{tmp_path}/engine", *flags]
    )
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert said in err
    assert err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_a_dataset_refused_for_a_held_engine_leaves_its_destination_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine, destination = tmp_path / "engine", tmp_path / "out"
    engine.mkdir()
    argv = ["export", "dataset", str(destination), "--clickhouse", f"chdb://{engine}"]
    # The loader's lock on the engine: another open file description conflicts even in this
    # process, and the PID written is not this one.
    with (engine / "status").open("w") as held:
        held.write("PID: 1\n")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX)
        args = build_parser().parse_args(argv)
        assert args.func(args) == 2
    assert "the loader holds" in capsys.readouterr().err
    # Nothing made: the same DEST takes a new export with other flags afterwards, never refused
    # as "an unfinished export with other arguments".
    assert not destination.exists()
