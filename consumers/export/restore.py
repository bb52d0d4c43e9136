"""`logorhythms restore SRC`: an archive into an empty ClickHouse, proven identical.

The archive is verified first (every file's sha256 and rows against its manifest). The target
gets the schema from the migrations, then every day file in the archive's table order: raw
events, then ``exchanges`` (its rollup view rebuilds ``exchanges_per_minute`` from exactly the
archived rows), then the audit trail. Each insert carries the file's sha256 as its
deduplication token, so a restore interrupted half-way can be run again without doubling a
row. Last, every table's rows and row checksum per day are computed by the target and compared
with the manifest; any difference fails the restore.

An archive in a bucket is first copied whole into a local temporary directory; that copy is
what is verified and inserted, so an object that changes during the restore cannot slip in
unverified.
"""

from __future__ import annotations

from pathlib import Path

from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.migrate import migrate
from consumers.export.archive import DAY_OF, DaySummary, day_summaries
from consumers.export.manifest import MANIFEST_NAME, Manifest, read_manifest, verify
from consumers.export.source import ExportError, open_clickhouse, schema_version, shown_dsn
from consumers.export.store import ExportStore, as_store

_NOT_EMPTY = (
    "{table} in the target already holds {rows} rows: restore into an empty database "
    "(a new chdb:// directory, or CREATE DATABASE on a server and name it in the DSN)"
)


def _checked_archive(source: Path, shown: str) -> Manifest:
    result = verify(source)
    if not result.ok:
        listed = "; ".join(result.problems[:10])
        more = f" (and {len(result.problems) - 10} more)" if len(result.problems) > 10 else ""
        raise ExportError(
            f"{shown} does not match its manifest, nothing restored: {listed}{more}; "
            f"run `logorhythms export verify {shown}` for the full list"
        )
    manifest = read_manifest(source)
    if manifest.kind != "archive":
        raise ExportError(f"{shown} holds a {manifest.kind} export, not an archive")
    if manifest.schema_version > schema_version():
        raise ExportError(
            f"{shown} was archived at schema version {manifest.schema_version}, newer than this "
            f"Logorhythms knows ({schema_version()}): restore with the version that archived it"
        )
    return manifest


async def _check_empty(clickhouse: ClickHouse) -> None:
    present = {
        name
        for (name,) in await clickhouse.rows(
            "SELECT name FROM system.tables WHERE database = currentDatabase()"
        )
    }
    for table in (*DAY_OF, "exchanges_per_minute"):
        if table in present:
            rows = int((await clickhouse.rows(f"SELECT count() FROM {table}"))[0][0])  # noqa: S608
            if rows:
                raise ExportError(_NOT_EMPTY.format(table=table, rows=rows))


def _differences(
    table: str, expected: dict[str, dict[str, object]], found: dict[str, DaySummary]
) -> list[str]:
    problems = []
    for day in sorted(set(expected) | set(found)):
        want, got = expected.get(day), found.get(day)
        if (
            want is None
            or got is None
            or (want["rows"], want["checksum"])
            != (
                got.rows,
                got.checksum,
            )
        ):
            shown_want = f"{want['rows']} rows, checksum {want['checksum']}" if want else "nothing"
            shown_got = f"{got.rows} rows, checksum {got.checksum}" if got else "nothing"
            problems.append(f"{table} {day}: archived {shown_want}, restored {shown_got}")
    return problems


async def restore(source: Path | ExportStore, clickhouse_url: str) -> int:
    """Restore the archive in ``source`` (a directory or a store) into an empty ClickHouse."""
    store = as_store(source)
    if store.read_bytes(MANIFEST_NAME) is None:
        raise ExportError(f"{store.location} holds no {MANIFEST_NAME}: is it an archive?")
    with store.local_copy() as local:
        return await _restore(local, store.location, clickhouse_url)


async def _restore(source: Path, shown: str, clickhouse_url: str) -> int:
    manifest = _checked_archive(source, shown)
    archived: dict[str, dict[str, dict[str, object]]] = manifest.metadata.get("tables", {})
    by_path = {f.path: f for f in manifest.files}
    rows_inserted = 0
    async with open_clickhouse(clickhouse_url) as clickhouse:
        await _check_empty(clickhouse)
        await migrate(clickhouse)
        for table in DAY_OF:
            for _day, entry in sorted(archived.get(table, {}).items()):
                file = by_path[str(entry["file"])]
                await clickhouse.insert_file(
                    table, source / file.path, fmt="Parquet", dedup_token=f"restore:{file.sha256}"
                )
                rows_inserted += int(str(entry["rows"]))
        problems: list[str] = []
        for table in DAY_OF:
            problems += _differences(
                table, archived.get(table, {}), await day_summaries(clickhouse, table)
            )
    if problems:
        raise ExportError("the restored data differs from the archive: " + "; ".join(problems))
    days = sum(len(d) for d in archived.values())
    print(
        f"restored {shown} into {shown_dsn(clickhouse_url)}: {days} day(s), "
        f"{rows_inserted} rows; every table's rows and checksums per day match the archive"
    )
    return 0
