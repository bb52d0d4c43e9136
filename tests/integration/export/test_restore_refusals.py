"""`logorhythms restore` of a hostile archive: every file matches its manifest (the attacker
rewrote both), but a day file holds rows of another day, a missing (or renamed) or retyped column,
or an extra row, or the manifest's per-day entries are malformed or name another table's file.
Each is refused in one line and the target holds nothing afterwards: no row in any table, no
staging table (row E21 of tests/README.md). Without the staging check, the raw tables before the
damaged one were inserted before the difference was found."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.migrate import migrate
from consumers.export.archive import DAY_OF, archive
from consumers.export.manifest import Manifest, describe_file, write_manifest
from consumers.export.manifest import read_manifest as read
from consumers.export.restore import restore
from consumers.export.source import ExportError
from tests.integration.export.captured_traffic import private_database

_2020_01_01 = b"016f5e66-e800"  # the first 48 bits (milliseconds) of a UUIDv7 of 2020-01-01


@pytest.fixture
async def clickhouse_url(clickhouse_url: str) -> str:
    return await private_database(clickhouse_url)


async def _archived(clickhouse_url: str, root: Path) -> Path:
    """An archive of 20 exchanges' raw rows (request, chunk, completion), all of today."""
    async with ClickHouse(clickhouse_url) as clickhouse:
        await migrate(clickhouse)
        for table, columns in (
            ("requests_raw", "request_id"),
            ("chunks_raw", "request_id, seq, data"),
            ("completions_raw", "request_id, status"),
        ):
            values = {
                "request_id": "toString(generateUUIDv7(number))",
                "request_id, seq, data": "toString(generateUUIDv7(number)), 1, randomString(32)",
                "request_id, status": "toString(generateUUIDv7(number)), 200",
            }[columns]
            await clickhouse.command(
                f"INSERT INTO {table} ({columns}) SELECT {values} FROM numbers(20)"  # noqa: S608
            )
    await archive(clickhouse_url, root)
    return root


def _rewrite(root: Path, table: str, change: Callable[[pa.Table], pa.Table]) -> None:
    """Change ``table``'s day file and rewrite the manifest to match it, as an attacker can."""
    (victim,) = root.glob(f"table={table}/day=*/part-00000.parquet")
    pq.write_table(change(pq.read_table(victim)), victim)
    manifest = read(root)
    relative = victim.relative_to(root).as_posix()
    files = tuple(
        describe_file(root, relative) if f.path == relative else f for f in manifest.files
    )
    write_manifest(root, Manifest(**{**_fields(manifest), "files": files}))


def _fields(manifest: Manifest) -> dict[str, Any]:
    return {k: getattr(manifest, k) for k in Manifest.__dataclass_fields__}


def _with_ids(table: pa.Table, ids: list[bytes]) -> pa.Table:
    field = table.schema.field("request_id")
    index = table.schema.get_field_index("request_id")
    return table.set_column(index, field, pa.array(ids, field.type))


def _other_day(table: pa.Table) -> pa.Table:
    return _with_ids(table, [_2020_01_01 + i[13:] for i in table.column("request_id").to_pylist()])


def _one_more_row(table: pa.Table) -> pa.Table:
    first = table.slice(0, 1)
    (request_id,) = first.column("request_id").to_pylist()
    twin = request_id[:-1] + (b"0" if request_id[-1:] != b"0" else b"1")
    return pa.concat_tables([table, _with_ids(first, [twin])])


DAMAGE: dict[str, Callable[[pa.Table], pa.Table]] = {
    "rows of another day": _other_day,
    "a missing column": lambda t: t.drop_columns(["status"]),
    "a column of another type": lambda t: t.set_column(
        t.schema.get_field_index("status"), "status", pa.array(["two hundred"] * t.num_rows)
    ),
    "an extra row": _one_more_row,
}


async def _nothing_in(target: str) -> None:
    async with ClickHouse(target) as clickhouse:
        tables = {
            name
            for (name,) in await clickhouse.rows(
                "SELECT name FROM system.tables WHERE database = currentDatabase()"
            )
        }
        assert not {t for t in tables if t.startswith("_restore_")}, tables
        for table in (*DAY_OF, "exchanges_per_minute"):
            assert (await clickhouse.rows(f"SELECT count() FROM {table}"))[0][0] == 0, table  # noqa: S608


@pytest.mark.slow  # 12-16 s on a loaded 2-core machine: four refused restores and a good one
async def test_a_self_consistent_hostile_archive_restores_nothing(
    clickhouse_url: str, tmp_path: Path
) -> None:
    archived = await _archived(clickhouse_url, tmp_path / "archive")
    target = await private_database(clickhouse_url.partition("?")[0])
    for damage, change in DAMAGE.items():
        root = Path(shutil.copytree(archived, tmp_path / damage.replace(" ", "-")))
        _rewrite(root, "completions_raw", change)  # inserted after requests_raw and chunks_raw
        with pytest.raises(ExportError, match="nothing restored") as refused:
            await restore(root, target)
        assert "completions_raw" in str(refused.value), damage
        assert "\n" not in str(refused.value), damage
        await _nothing_in(target)
    # The control: the undamaged archive restores into the same target.
    await restore(archived, target)
    async with ClickHouse(target) as clickhouse:
        assert (await clickhouse.rows("SELECT count() FROM completions_raw"))[0][0] == 20


METADATA: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "another table's file": (
        lambda t: [
            entry.update(file=entry["file"].replace("completions_raw", "chunks_raw"))
            for entry in t["completions_raw"].values()
        ],
        "names the file",
    ),
    "a day that is a path": (
        lambda t: t["completions_raw"].update({"../../x": {"rows": 1, "checksum": "1"}}),
        "is not for a day",
    ),
    "a row count that is text": (
        lambda t: [entry.update(rows="20") for entry in t["completions_raw"].values()],
        "has no row count and checksum",
    ),
    "days that are a list": (
        lambda t: t.update(completions_raw=list(t["completions_raw"])),
        "are not an object",
    ),
}


async def test_malformed_day_entries_are_refused_before_the_target_is_opened(
    clickhouse_url: str, tmp_path: Path
) -> None:
    archived = await _archived(clickhouse_url, tmp_path / "archive")
    for case, (change, said) in METADATA.items():
        root = Path(shutil.copytree(archived, tmp_path / case.replace(" ", "-")))
        manifest = read(root)
        tables = json.loads(json.dumps(manifest.metadata["tables"]))
        change(tables)
        metadata = {**manifest.metadata, "tables": tables}
        write_manifest(root, Manifest(**{**_fields(manifest), "metadata": metadata}))
        target = tmp_path / "never"
        with pytest.raises(ExportError, match=said) as refused:
            await restore(root, f"chdb://{target}")
        assert "\n" not in str(refused.value), case
        assert not target.exists(), case


async def test_an_extra_column_is_ignored_and_a_link_is_refused(
    clickhouse_url: str, tmp_path: Path
) -> None:
    """Proven harmless: a day file with a column the table does not have restores exactly the
    archived rows (the engine reads only the table's columns; the checksums agree). A day file
    replaced by a link to an identical copy outside the archive is refused, the target never
    created."""
    archived = await _archived(clickhouse_url, tmp_path / "archive")
    root = Path(shutil.copytree(archived, tmp_path / "extra-column"))
    _rewrite(root, "completions_raw", lambda t: t.append_column("planted", pa.array([1] * 20)))
    target = await private_database(clickhouse_url.partition("?")[0])
    await restore(root, target)
    async with ClickHouse(target) as clickhouse:
        assert (await clickhouse.rows("SELECT count() FROM completions_raw"))[0][0] == 20
        columns = await clickhouse.rows(
            "SELECT name FROM system.columns "
            "WHERE table = 'completions_raw' AND database = currentDatabase()"
        )
        assert "planted" not in {name for (name,) in columns}

    (victim,) = archived.glob("table=chunks_raw/day=*/part-00000.parquet")
    outside = tmp_path / "outside.parquet"
    victim.rename(outside)
    victim.symlink_to(outside)
    never = tmp_path / "never"
    with pytest.raises(ExportError, match="does not match its manifest, nothing restored") as e:
        await restore(archived, f"chdb://{never}")
    assert "outside the export directory" in str(e.value)
    assert not never.exists()
