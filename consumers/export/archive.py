"""`logorhythms archive DEST`: every captured table as day-partitioned Parquet, incrementally.

Layout: ``DEST/table=<name>/day=<YYYY-MM-DD>/part-00000.parquet`` and ``DEST/manifest.json``.
Each file is ClickHouse's own Parquet output (zstd; strings as bytes, so bodies and chunks stay
byte-exact; rows in a fixed order, so the same day always gives the same file) of one table's
rows of one day, by the time inside the UUIDv7 request id: all events of an exchange share a
day. The manifest holds, per table and day, the row count and a checksum of the rows
(``sum(cityHash64(formatRow('RowBinary', *)))``, computed by ClickHouse, independent of the
file's layout); a later run skips each day whose rows and checksum are unchanged and whose file
is still there, so copying DEST elsewhere (rsync, ``aws s3 sync``) moves only new days. Days
that are no longer in ClickHouse stay in the archive: it outlives the database.

DEST is a directory or ``s3://BUCKET/PREFIX`` (``consumers.export.store``). Each day file is
made whole in a local staging directory, checked, then put in place in one step; the manifest
is put last. A run that dies half-way leaves day files no manifest vouches for yet; the next
run recomputes them and completes.

Rows are read with ``FINAL``: the archive holds each table's content once, whatever merges the
engine has or has not run yet (a redelivered event that slipped past insert deduplication is one
row, as ``FINAL`` shows it to analysts), so its checksums do not move when a merge runs.

``exchanges`` is archived as well as the raw tables: the loader assembled it with the code of
its day, and a restore must give analysts back the same rows, not a re-assembly by newer code.
The rollup ``exchanges_per_minute`` is not archived: its view rebuilds it when a restore inserts
``exchanges``. ``export_audit`` is archived, by day of export: the trail outlives the data too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from consumers.clickhouse.client import ClickHouse
from consumers.export.audit import AuditEntry, current_operator, record_export
from consumers.export.manifest import (
    MANIFEST_NAME,
    FileEntry,
    Manifest,
    ManifestError,
    describe_file,
    read_manifest,
    write_manifest,
)
from consumers.export.source import (
    ExportError,
    check_apart,
    open_clickhouse,
    schema_version,
    shown_dsn,
    tool_version,
)
from consumers.export.store import DirectoryStore, ExportStore, as_store, staged_path

_REQUEST_DAY = "toDate(UUIDv7ToDateTime(toUUIDOrZero(request_id)))"
# Table → the day each row belongs to, in the order a restore inserts them: raw events before
# `exchanges` (whose insert feeds the rollup view), the audit trail last.
DAY_OF: dict[str, str] = {
    "requests_raw": _REQUEST_DAY,
    "chunks_raw": _REQUEST_DAY,
    "completions_raw": _REQUEST_DAY,
    "exchanges": _REQUEST_DAY,
    "export_audit": "toDate(exported_at)",
}
ROW_CHECKSUM = "toString(sum(cityHash64(formatRow('RowBinary', *))))"
PARQUET_SETTINGS = {
    "output_format_parquet_string_as_string": 0,  # bytes exactly as stored, never re-encoded
    "output_format_parquet_compression_method": "zstd",
}
# A day that changes while it is written (a loader inserting into a server) is written again.
_ATTEMPTS = 3
# What an archive run leaves before its manifest: day files, finished or staged.
_ARCHIVE_FILE = re.compile(
    r"(table=[a-z_]+/day=\d{4}-\d{2}-\d{2}/(\.tmp\.)?part-00000\.parquet|\.manifest\.json\.tmp)"
)


@dataclass(frozen=True, slots=True)
class DaySummary:
    rows: int
    checksum: str

    def to_json(self, file: str) -> dict[str, Any]:
        return {"rows": self.rows, "checksum": self.checksum, "file": file}


async def day_summaries(
    clickhouse: ClickHouse, table: str, *, held_in: str | None = None
) -> dict[str, DaySummary]:
    """Rows and row checksum of every day of ``table`` (its rows as held in the table
    ``held_in``, by default itself), by ClickHouse (the archive's proof)."""
    found = await clickhouse.rows(
        f"SELECT toString({DAY_OF[table]}) AS day, count(), {ROW_CHECKSUM} "  # noqa: S608 (constants)
        f"FROM {held_in or table} FINAL GROUP BY day ORDER BY day"
    )
    return {day: DaySummary(int(rows), checksum) for day, rows, checksum in found}


async def _day_summary(clickhouse: ClickHouse, table: str, day: str) -> DaySummary:
    found = await clickhouse.rows(
        f"SELECT count(), {ROW_CHECKSUM} FROM {table} FINAL "  # noqa: S608 (constants)
        f"WHERE {DAY_OF[table]} = {{day:Date}}",
        {"day": date.fromisoformat(day)},
    )
    return DaySummary(int(found[0][0]), found[0][1])


def day_file(table: str, day: str) -> str:
    return f"table={table}/day={day}/part-00000.parquet"


def _previous(store: ExportStore) -> Manifest | None:
    """The archive already in ``store`` (None for a new one), the destination made ready."""
    if store.size(MANIFEST_NAME) is None:
        foreign = [f for f in store.files() if not _ARCHIVE_FILE.fullmatch(f)]
        if foreign:
            raise ExportError(
                f"{store.location} holds files but no {MANIFEST_NAME} (e.g. {foreign[0]}): "
                "archive into a new or empty directory or prefix, or into an existing archive"
            )
        store.prepare()  # new, or day files of a run that died before its manifest: redone
        return None
    try:
        manifest = read_manifest(store)
    except ManifestError as exc:
        raise ExportError(f"{exc}; archive into a new or empty directory instead") from None
    if manifest.kind != "archive":
        raise ExportError(f"{store.location} holds a {manifest.kind} export, not an archive")
    store.prepare()
    return manifest


async def _write_day(
    clickhouse: ClickHouse, store: ExportStore, staging: Path, table: str, day: str
) -> tuple[DaySummary, FileEntry]:
    """Write one day's file, made whole and described locally, then put in place."""
    relative = day_file(table, day)
    staged = staged_path(staging, relative)
    for _ in range(_ATTEMPTS):
        before = await _day_summary(clickhouse, table, day)
        await clickhouse.query_to_file(
            f"SELECT * FROM {table} FINAL WHERE {DAY_OF[table]} = {{day:Date}} "  # noqa: S608
            "ORDER BY ALL",
            staged,
            fmt="Parquet",
            parameters={"day": date.fromisoformat(day)},
            settings=PARQUET_SETTINGS,
        )
        if await _day_summary(clickhouse, table, day) == before:
            entry = describe_file(staging, staged.relative_to(staging).as_posix())
            if entry.rows != before.rows:
                staged.unlink(missing_ok=True)
                raise ExportError(
                    f"{relative} holds {entry.rows} rows where ClickHouse counted "
                    f"{before.rows}: the Parquet output is incomplete; archive again"
                )
            store.put(staged, relative)
            return before, dataclasses.replace(entry, path=relative)
    staged.unlink(missing_ok=True)
    raise ExportError(
        f"{table} on {day} kept changing while it was written ({_ATTEMPTS} attempts); "
        "archive again when the loader has caught up, or archive days before today only"
    )


def snapshot_of(days: dict[str, dict[str, dict[str, Any]]]) -> str:
    """One id for the archived state: the sha256 of every table's days, rows and checksums."""
    state = {t: {d: [v["rows"], v["checksum"]] for d, v in ds.items()} for t, ds in days.items()}
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


async def archive(clickhouse_url: str, destination: Path | ExportStore) -> int:
    """Archive every table into ``destination`` (an absolute path or a store); print what was
    written."""
    root = as_store(destination)
    if isinstance(root, DirectoryStore):
        check_apart(clickhouse_url, root.root, "DEST")
    previous = _previous(root)
    old_days: dict[str, dict[str, dict[str, Any]]] = (
        dict(previous.metadata.get("tables", {})) if previous else {}
    )
    old_files = {f.path: f for f in previous.files} if previous else {}
    files: dict[str, FileEntry] = dict(old_files)
    days: dict[str, dict[str, dict[str, Any]]] = {t: dict(old_days.get(t, {})) for t in DAY_OF}
    written = skipped = rows_written = 0
    exported_at = datetime.now(UTC)
    async with open_clickhouse(clickhouse_url) as clickhouse:
        with root.staging() as staging:
            for table in DAY_OF:
                for day, summary in (await day_summaries(clickhouse, table)).items():
                    relative = day_file(table, day)
                    known, entry = days[table].get(day), old_files.get(relative)
                    if (
                        known == summary.to_json(relative)
                        and entry is not None
                        and root.size(relative) == entry.size
                    ):
                        skipped += 1
                        continue
                    summary, files[relative] = await _write_day(
                        clickhouse, root, staging, table, day
                    )
                    days[table][day] = summary.to_json(relative)
                    written += 1
                    rows_written += summary.rows
        manifest = Manifest(
            kind="archive",
            export_id=str(uuid.uuid4()),
            created_at=exported_at.isoformat().replace("+00:00", "Z"),
            tool_version=tool_version(),
            schema_version=schema_version(),
            snapshot_id=snapshot_of(days),
            files=tuple(files.values()),
            metadata={
                "source": shown_dsn(clickhouse_url),
                "layout": "table=<table>/day=<YYYY-MM-DD>/part-00000.parquet",
                "day_of": DAY_OF,
                "row_checksum": ROW_CHECKSUM,
                "tables": days,
                "this_run": {"days_written": written, "days_unchanged": skipped},
            },
        )
        manifest_sha256 = write_manifest(root, manifest)
        await record_export(
            clickhouse,
            AuditEntry(
                export_id=manifest.export_id,
                kind="archive",
                exported_at=exported_at,
                operator=current_operator(),
                destination=root.location,
                manifest_sha256=manifest_sha256,
                rows=rows_written,
                filter=json.dumps({"days_written": written}),
            ),
        )
    print(
        f"archived into {root.location}: {written} day file(s) written ({rows_written} rows), "
        f"{skipped} unchanged; manifest sha256 {manifest_sha256}"
    )
    return 0
