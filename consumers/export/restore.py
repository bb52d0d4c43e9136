"""`logorhythms restore SRC`: an archive into an empty ClickHouse, proven identical.

The archive is verified first (every file's sha256 and rows against its manifest). The target
gets the schema from the migrations, then every table's staged rows (below) in the archive's
table order: raw events, then ``exchanges`` (its rollup view rebuilds ``exchanges_per_minute``
from exactly the archived rows), then the audit trail. Last, every table's rows and row
checksum per day are computed by the target and compared with the manifest; any difference
fails the restore.

An archive in a bucket is first copied whole into a local temporary directory; that copy is
what is verified and inserted, so an object that changes during the restore cannot slip in
unverified.

A hostile or damaged archive restores nothing: the manifest's per-day entries must each name
their own day file; every file is first inserted into a staging copy of its table
(``_restore_<table>``, same engine, no views), and only when every staged table's rows and
checksum per day equal the manifest's (a file with other columns or types, or rows of another
day, fails here or on insert) are the staged rows copied into the real tables in one
``INSERT ... SELECT`` each. The staging tables are dropped whatever happens.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from consumers.clickhouse.client import ClickHouse, ClickHouseError
from consumers.clickhouse.migrate import migrate
from consumers.export.archive import DAY_OF, DaySummary, day_file, day_summaries
from consumers.export.manifest import MANIFEST_NAME, FileEntry, Manifest, read_manifest, verify
from consumers.export.source import (
    ExportError,
    check_apart,
    open_clickhouse,
    schema_version,
    shown_dsn,
)
from consumers.export.store import DirectoryStore, ExportStore, as_store

_NOT_EMPTY = (
    "{table} in the target already holds {rows} rows: restore into an empty database "
    "(a new chdb:// directory, or CREATE DATABASE on a server and name it in the DSN)"
)
_STAGED = "_restore_{table}"
# One day of one table, as the manifest says it was archived.
ArchivedDays = dict[str, dict[str, tuple[DaySummary, FileEntry]]]


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


def _archived_days(manifest: Manifest, shown: str) -> ArchivedDays:
    """The manifest's per-day entries, each checked to be a day of a known table whose file is
    that day's own, listed in the manifest (so verified); any other is refused."""
    by_path = {f.path: f for f in manifest.files}
    tables = manifest.metadata.get("tables", {})
    if not isinstance(tables, dict):
        raise ExportError(f"{shown}: its manifest's metadata.tables is not an object")
    archived: ArchivedDays = {}
    for table in DAY_OF:
        days = tables.get(table, {})
        if not isinstance(days, dict):
            raise ExportError(f"{shown}: its manifest's days of {table} are not an object")
        archived[table] = {}
        for day, entry in days.items():
            archived[table][day] = _archived_day(table, day, entry, by_path, shown)
    return archived


def _archived_day(
    table: str, day: object, entry: Any, by_path: dict[str, FileEntry], shown: str
) -> tuple[DaySummary, FileEntry]:
    where = f"{shown}: its manifest's entry for {table} {day!r}"
    try:
        date.fromisoformat(str(day))
    except ValueError:
        raise ExportError(f"{where} is not for a day (YYYY-MM-DD)") from None
    if not isinstance(entry, dict):
        raise ExportError(f"{where} is not an object")
    rows, checksum, file = entry.get("rows"), entry.get("checksum"), entry.get("file")
    if isinstance(rows, bool) or not isinstance(rows, int) or not isinstance(checksum, str):
        raise ExportError(f"{where} has no row count and checksum")
    if file != day_file(table, str(day)) or file not in by_path:
        raise ExportError(
            f"{where} names the file {file!r}, not {day_file(table, str(day))}, or one the "
            "manifest does not list: it was not made by `logorhythms archive`"
        )
    return DaySummary(rows, checksum), by_path[file]


def _differences(
    table: str, expected: dict[str, DaySummary], found: dict[str, DaySummary], verb: str
) -> list[str]:
    problems = []
    for day in sorted(set(expected) | set(found)):
        want, got = expected.get(day), found.get(day)
        if want != got:
            shown_want = f"{want.rows} rows, checksum {want.checksum}" if want else "nothing"
            shown_got = f"{got.rows} rows, checksum {got.checksum}" if got else "nothing"
            problems.append(f"{table} {day}: archived {shown_want}, {verb} {shown_got}")
    return problems


async def _drop_staged(clickhouse: ClickHouse) -> None:
    for table in DAY_OF:
        await clickhouse.command(f"DROP TABLE IF EXISTS {_STAGED.format(table=table)}")


async def _stage(clickhouse: ClickHouse, source: Path, archived: ArchivedDays, shown: str) -> None:
    """Every day file into its table's staging copy; refused unless each staged table holds
    exactly the days, rows and checksums the manifest says."""
    problems: list[str] = []
    for table, days in archived.items():
        staged = _STAGED.format(table=table)
        await clickhouse.command(f"CREATE TABLE {staged} AS {table}")
        for _day, (_summary, file) in sorted(days.items()):
            try:
                await clickhouse.insert_file(
                    staged, source / file.path, fmt="Parquet", dedup_token=f"restore:{file.sha256}"
                )
            except ClickHouseError as exc:
                raise ExportError(
                    f"{shown}: {file.path} cannot be read into {table}, nothing restored: {exc}"
                ) from None
        expected = {day: summary for day, (summary, _file) in days.items()}
        found = await day_summaries(clickhouse, table, held_in=staged)
        problems += _differences(table, expected, found, "its files hold")
    if problems:
        raise ExportError(
            f"{shown}: its files do not hold what its manifest says, nothing restored: "
            + "; ".join(problems[:10])
        )


async def restore(source: Path | ExportStore, clickhouse_url: str) -> int:
    """Restore the archive in ``source`` (a directory or a store) into an empty ClickHouse."""
    store = as_store(source)
    if isinstance(store, DirectoryStore):
        check_apart(clickhouse_url, store.root, "SRC")
    if store.size(MANIFEST_NAME) is None:
        raise ExportError(f"{store.location} holds no {MANIFEST_NAME}: is it an archive?")
    with store.local_copy() as local:
        return await _restore(local, store.location, clickhouse_url)


async def _restore(source: Path, shown: str, clickhouse_url: str) -> int:
    manifest = _checked_archive(source, shown)
    archived = _archived_days(manifest, shown)
    rows_inserted = sum(s.rows for days in archived.values() for s, _file in days.values())
    async with open_clickhouse(clickhouse_url) as clickhouse:
        await _check_empty(clickhouse)
        await migrate(clickhouse)
        await _drop_staged(clickhouse)  # left by a restore that was killed
        try:
            await _stage(clickhouse, source, archived, shown)
            for table in DAY_OF:  # in order: `exchanges` feeds the rollup's view
                await clickhouse.command(
                    f"INSERT INTO {table} SELECT * FROM {_STAGED.format(table=table)} FINAL "  # noqa: S608
                    "SETTINGS insert_deduplicate = 0"  # the target was empty: nothing to repeat
                )
        finally:
            await _drop_staged(clickhouse)
        problems: list[str] = []
        for table in DAY_OF:
            expected = {day: summary for day, (summary, _file) in archived[table].items()}
            found = await day_summaries(clickhouse, table)
            problems += _differences(table, expected, found, "restored")
    if problems:
        raise ExportError("the restored data differs from the archive: " + "; ".join(problems))
    days = sum(len(d) for d in archived.values())
    print(
        f"restored {shown} into {shown_dsn(clickhouse_url)}: {days} day(s), "
        f"{rows_inserted} rows; every table's rows and checksums per day match the archive"
    )
    return 0
