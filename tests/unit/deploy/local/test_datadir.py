"""The data dir of `up`: private to its owner; a fingerprint key that survives restarts."""

from __future__ import annotations

import stat
from pathlib import Path

from deploy.local.datadir import fingerprint_key, make_private


def test_make_private_removes_group_and_other_access(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "logs").mkdir(parents=True)
    (root / "logs").chmod(0o755)
    (root / "logs" / "proxy.log").write_text("prompt")
    (root / "logs" / "proxy.log").chmod(0o644)

    make_private(root)

    for path in (root, root / "logs", root / "logs" / "proxy.log"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    assert stat.S_IMODE((root / "logs" / "proxy.log").stat().st_mode) == 0o600


def test_fingerprint_key_is_created_once_private_and_kept(tmp_path: Path) -> None:
    first = fingerprint_key(tmp_path)
    assert len(first) == 64
    assert int(first, 16) >= 0
    assert stat.S_IMODE((tmp_path / "fingerprint.key").stat().st_mode) == 0o600
    assert fingerprint_key(tmp_path) == first
