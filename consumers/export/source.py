"""How the export tools reach ClickHouse: a server DSN, or the embedded directory when it is free.

An embedded chdb directory can be opened by one process at a time, and a running loader holds it.
Exports need more than the loader's read-only SQL endpoint gives (the audit insert), so they open
the directory themselves, and say so in one line when the loader holds it instead of letting the
engine fail with a stack of internal errors.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.migrate import load_migrations
from consumers.export.store import check_directory_destination
from consumers.settings import (
    DEFAULT_CLICKHOUSE_URL,
    embedded_path,
    is_embedded,
    normalize_clickhouse_url,
)

# ClickHouse's own lock: the server (and chdb) holds an exclusive flock on this file.
_STATUS_FILE = "status"


class ExportError(Exception):
    """An export cannot proceed; the message says what to do. Exits with status 2."""

    retriable = False


def default_clickhouse_url(env: Mapping[str, str] | None = None) -> str:
    """Where the loader writes: ``CLICKHOUSE_URL``, else the embedded directory it defaults to."""
    env = os.environ if env is None else env
    return normalize_clickhouse_url(env.get("CLICKHOUSE_URL") or DEFAULT_CLICKHOUSE_URL)


def holder_of(directory: Path) -> str | None:
    """None when no process holds the embedded directory, else a description of the holder."""
    status = directory / _STATUS_FILE
    try:
        handle = status.open("rb")
    except FileNotFoundError:
        return None
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = next(
                (
                    line.split(b":", 1)[1].strip().decode(errors="replace")
                    for line in handle.read(4096).splitlines()
                    if line.startswith(b"PID:")
                ),
                "",
            )
            if pid == str(os.getpid()):
                return None  # this process has the engine open already (chdb: one per process)
            return f"pid {pid}" if pid else "another process"
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return None


def check_available(url: str) -> None:
    """Refuse, with what to do, an embedded directory another process (the loader) holds."""
    if not is_embedded(url):
        return
    directory = embedded_path(url)
    holder = holder_of(directory)
    if holder is not None:
        raise ExportError(
            f"the loader holds {directory} ({holder}); stop it (Ctrl-C in `logorhythms up`, or "
            "stop the load-clickhouse service) or point --clickhouse at a ClickHouse server "
            "(http://exporter:PASSWORD@HOST:8123/logorhythms)"
        )


@asynccontextmanager
async def open_clickhouse(url: str) -> AsyncIterator[ClickHouse]:
    """The adapter for an export: checked for the embedded lock first."""
    url = normalize_clickhouse_url(url)
    check_available(url)
    async with ClickHouse(url) as clickhouse:
        yield clickhouse


def check_apart(clickhouse_url: str, directory: Path, what: str) -> None:
    """Refuse an export directory that overlaps the embedded engine's directory (inside it, or
    holding it): the engine owns every file under its directory, and an export must hold only
    its own files (``export verify`` names every other one)."""
    if not is_embedded(clickhouse_url):
        return
    engine = embedded_path(normalize_clickhouse_url(clickhouse_url))
    place = directory.resolve()
    if place == engine or engine in place.parents or place in engine.parents:
        raise ExportError(
            f"{what} {directory} overlaps the ClickHouse directory {engine}: choose a directory "
            "outside it that does not hold it"
        )


def check_destination(clickhouse_url: str, directory: Path, what: str) -> None:
    """Refuse a directory to write an export into that is a link or a file, or that overlaps
    the embedded engine's directory; and an engine another process holds, here, before the
    export makes anything in the directory (a dataset's ``.state`` left by a refused run would
    make the next command into it, with other flags, look like a resume of another export)."""
    check_directory_destination(directory)
    check_apart(clickhouse_url, directory, what)
    check_available(clickhouse_url)


def tool_version() -> str:
    try:
        return metadata.version("logorhythms")
    except metadata.PackageNotFoundError:
        return "unknown"


def schema_version() -> int:
    """The newest migration this code knows: the schema its exports are written against."""
    migrations = load_migrations()
    return migrations[-1].version if migrations else 0


def shown_dsn(url: str) -> str:
    """The DSN with any password replaced, for manifests and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))
