"""`logorhythms archive`: the raw tables as day-partitioned Parquet."""

from __future__ import annotations

from consumers.export.source import ExportError


async def archive(clickhouse_url: str, destination: str) -> int:
    raise ExportError("archive is not available in this build")
