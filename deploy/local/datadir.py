"""The data dir of `logorhythms up`: private to its owner, holding a persistent fingerprint key."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["fingerprint_key", "make_private"]


def make_private(root: Path) -> None:
    """The data dir and everything already in it readable by its owner only (prompts, keys and
    responses live there). New files are private through the umask every service sets."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    for directory, subdirs, files in os.walk(root):
        for name in (directory, *(os.path.join(directory, n) for n in (*subdirs, *files))):
            with contextlib.suppress(FileNotFoundError):
                mode = os.lstat(name).st_mode
                if mode & 0o077 and not os.path.islink(name):
                    os.chmod(name, mode & 0o700)


def fingerprint_key(data_dir: Path) -> str:
    """A persistent key, so fingerprints of the same credential stay equal across restarts."""
    path = data_dir / "fingerprint.key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    return path.read_text().strip()
