"""`logorhythms restore`: an archive into an empty ClickHouse."""

from __future__ import annotations

from pathlib import Path

from consumers.export.source import ExportError


async def restore(source: Path, clickhouse_url: str) -> int:
    raise ExportError("restore is not available in this build")
