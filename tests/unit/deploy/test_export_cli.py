"""The export commands' arguments: an s3:// dataset destination is refused saying what to do
instead of becoming a local directory named ``s3:``."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.cli import build_parser


def test_a_dataset_to_s3_is_refused_with_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["export", "dataset", "s3://bucket/datasets/x"])
    assert args.func(args) == 2
    said = capsys.readouterr().err
    assert "aws s3 cp --recursive" in said
    assert said.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # no local directory "s3:" made


def test_s3_options_exist_where_an_s3_location_is_taken() -> None:
    for command in (
        ["archive", "s3://b/p"],
        ["restore", "s3://b/p"],
        ["export", "verify", "s3://b/p"],
        ["export", "legal", "s3://b/p", "--case", "C"],
    ):
        args = build_parser().parse_args([*command, "--s3-endpoint", "http://h:9000"])
        assert args.s3_endpoint == "http://h:9000"
        assert args.s3_region is None
