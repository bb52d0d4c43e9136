"""The export commands' arguments: S3 options wherever an s3:// location is taken; `--staging`
only for a bucket; an endpoint URL holding credentials refused without being echoed."""

from __future__ import annotations

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
