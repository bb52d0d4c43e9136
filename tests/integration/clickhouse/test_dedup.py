"""Idempotence of the ClickHouse model: retries, replays and the rollup never double a row."""

from __future__ import annotations

import time

from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.rows import EXCHANGE_COLUMNS, exchange_row
from consumers.clickhouse.sink import ClickHouseSink
from consumers.sink import Batch, Record
from schemas import Codec
from tests.integration.clickhouse.conftest import LoaderFactory
from tests.integration.clickhouse.synthetic import Exchange, encoded, produce, uuid7

TABLES = ("requests_raw", "chunks_raw", "completions_raw", "exchanges")


def _exchanges(n: int, salt: str) -> list[Exchange]:
    now_ms = time.time_ns() // 1_000_000
    return [
        Exchange(request_id=uuid7(now_ms + i, f"{salt}{i}"), received_at_ms=now_ms + i)
        for i in range(n)
    ]


def _batch(exchanges: list[Exchange]) -> Batch:
    codec = Codec()
    records = [
        Record("topic", 0, offset, key.encode(), value, codec.decode(value))
        for offset, (key, value) in enumerate(encoded(exchanges, codec))
    ]
    return Batch.of(records)


async def _counts(clickhouse: ClickHouse, *, final: bool = False) -> dict[str, int]:
    suffix = " FINAL" if final else ""
    return {
        t: (await clickhouse.rows(f"SELECT count() FROM {t}{suffix}"))[0][0]  # noqa: S608
        for t in TABLES
    }


async def _rollup_total(clickhouse: ClickHouse) -> int:
    rows = await clickhouse.rows("SELECT sum(exchanges) FROM exchanges_per_minute")
    return int(rows[0][0])


async def test_a_batch_written_twice_adds_no_row_anywhere(
    clickhouse: ClickHouse, database_url: str
) -> None:
    batch = _batch(_exchanges(5, "twice"))
    sink = ClickHouseSink(ClickHouse(database_url))
    await sink.start()
    try:
        await sink.write(batch)
        first = await _counts(clickhouse)
        await sink.write(batch)  # the runner's retry: same records, same token
        # A fresh loader (restart) forgets the in-memory state but not the tokens in ClickHouse.
        await ClickHouseSink(ClickHouse(database_url)).write(batch)
    finally:
        await sink.stop()
    assert first == {"requests_raw": 5, "chunks_raw": 5 * 7, "completions_raw": 5, "exchanges": 5}
    assert await _counts(clickhouse) == first  # without FINAL: no duplicate part was written
    assert await _rollup_total(clickhouse) == 5


async def test_a_retried_exchanges_insert_does_not_double_the_rollup(
    clickhouse: ClickHouse, database_url: str
) -> None:
    sink = ClickHouseSink(ClickHouse(database_url))
    await sink.start()  # migrations
    await sink.stop()
    exchange = _exchanges(1, "rollup")[0]
    events = exchange.events()
    row = exchange_row(events[0][1], [], events[-1][1])
    await clickhouse.insert("exchanges", [row], EXCHANGE_COLUMNS, dedup_token="t1")
    await clickhouse.insert("exchanges", [row], EXCHANGE_COLUMNS, dedup_token="t1")
    assert (await clickhouse.rows("SELECT count() FROM exchanges"))[0][0] == 1
    assert await _rollup_total(clickhouse) == 1

    # Negative control: the same row under another token is a second insert. The table's
    # FINAL hides it, the rollup cannot: this is why the loader skips exchanges already loaded.
    await clickhouse.insert("exchanges", [row], EXCHANGE_COLUMNS, dedup_token="t2")
    assert (await clickhouse.rows("SELECT count() FROM exchanges"))[0][0] == 2
    assert (await clickhouse.rows("SELECT count() FROM exchanges FINAL"))[0][0] == 1
    assert await _rollup_total(clickhouse) == 2


async def test_replay_from_offset_zero_with_a_new_group_changes_nothing(
    kafka_bootstrap: str, topic: str, start_loader: LoaderFactory, clickhouse: ClickHouse
) -> None:
    exchanges = _exchanges(20, "replay")
    messages = encoded(exchanges)
    await produce(kafka_bootstrap, topic, messages)
    first = await start_loader(group="first")
    await first.wait_records(len(messages))
    await first.stop()
    before = await _counts(clickhouse, final=True)
    uniq_before = await clickhouse.rows("SELECT uniqExact(request_id) FROM requests_raw")
    assert before["exchanges"] == 20

    # A new group starts from offset 0, with other batch boundaries, so other tokens.
    replay = await start_loader(group="replay", batch_max_records=7)
    await replay.wait_records(len(messages))
    await replay.stop()

    assert await _counts(clickhouse, final=True) == before
    assert await clickhouse.rows("SELECT uniqExact(request_id) FROM requests_raw") == uniq_before
    # The exchange layer and the rollup are exact even without FINAL: nothing was reloaded.
    assert (await clickhouse.rows("SELECT count() FROM exchanges"))[0][0] == 20
    assert await _rollup_total(clickhouse) == 20
    assert replay.sink.stats.already_loaded == 20


async def test_a_completed_event_published_twice_in_one_batch_loads_one_exchange(
    clickhouse: ClickHouse, database_url: str
) -> None:
    codec = Codec()
    messages = encoded(_exchanges(2, "republished"), codec)
    messages.append(messages[-1])  # the proxy's journal re-published the last completed event
    records = [
        Record("topic", 0, offset, key.encode(), value, codec.decode(value))
        for offset, (key, value) in enumerate(messages)
    ]
    sink = ClickHouseSink(ClickHouse(database_url))
    await sink.start()
    try:
        assert not (await sink.write(Batch.of(records))).rejected
    finally:
        await sink.stop()
    assert (await clickhouse.rows("SELECT count() FROM exchanges"))[0][0] == 2
    assert await _rollup_total(clickhouse) == 2
    assert (await clickhouse.rows("SELECT count() FROM completions_raw FINAL"))[0][0] == 2
