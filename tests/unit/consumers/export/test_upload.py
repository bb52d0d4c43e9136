"""Where a dataset for a bucket is staged: one directory per destination URL, under the XDG
cache directory or ``~/.cache``."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumers.export.upload import default_staging


def test_staging_is_one_directory_per_destination_in_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = default_staging("s3://b/p", {"XDG_CACHE_HOME": str(tmp_path)})
    assert first.parent == tmp_path / "logorhythms" / "exports"
    assert default_staging("s3://b/p", {"XDG_CACHE_HOME": str(tmp_path)}) == first
    assert default_staging("s3://b/q", {"XDG_CACHE_HOME": str(tmp_path)}) != first
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_staging("s3://b/p", {}).parent == (
        tmp_path / "home" / ".cache" / "logorhythms" / "exports"
    )
