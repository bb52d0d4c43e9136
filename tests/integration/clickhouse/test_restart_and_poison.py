"""A loader restarted mid-stream still assembles complete exchanges; poison never blocks."""

from __future__ import annotations

import time

import pytest

from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.migrate import SchemaTooNewError, load_migrations
from consumers.clickhouse.sink import ClickHouseSink
from tests.integration.clickhouse.conftest import LoaderFactory, read_deadletters
from tests.integration.clickhouse.synthetic import Exchange, encoded, produce, uuid7


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def test_loader_restarted_mid_stream_assembles_the_whole_exchange(
    kafka_bootstrap: str, topic: str, start_loader: LoaderFactory, clickhouse: ClickHouse
) -> None:
    answer = "one two three four five six seven eight"
    stream = Exchange(
        request_id=uuid7(_now_ms(), "restart"),
        received_at_ms=_now_ms(),
        answer=answer,
        gap_ms=(10, 30, 50, 20, 10, 10, 10, 10, 10, 10, 10, 10),
    )
    messages = encoded([stream])
    head, tail = messages[:5], messages[5:]  # request + 4 chunks, then the rest
    await produce(kafka_bootstrap, topic, head)
    first = await start_loader()
    await first.wait_records(len(head))
    await first.stop()  # committed: the new loader starts after these, with empty memory
    rows = await clickhouse.rows("SELECT count() FROM chunks_raw")
    assert rows[0][0] == 4

    second = await start_loader()
    await produce(kafka_bootstrap, topic, tail)
    await second.wait_records(len(tail))
    rows = await clickhouse.rows(
        "SELECT response_text, chunk_count, chunks_missing, prompt_tokens, usage_estimated, "
        "system_prompt, gap_max_ms, finish_reason FROM exchanges FINAL"
    )
    assert rows == [(answer, len(messages) - 2, 0, 12, False, "You are terse.", 50.0, "stop")]
    assert second.sink.stats.readbacks == 1  # assembled from what the first loader stored


@pytest.mark.parametrize("restart", [False, True], ids=["in-memory", "read-back"])
async def test_a_disconnected_streams_text_is_what_the_client_received(
    kafka_bootstrap: str,
    topic: str,
    start_loader: LoaderFactory,
    clickhouse: ClickHouse,
    restart: bool,
) -> None:
    # Chunks: role, "one", " two", " three", finish, usage, [DONE]; the last four never
    # reached the client (as if it left and the proxy read on: the columns must not care).
    stream = Exchange(
        request_id=uuid7(_now_ms(), "gone"),
        received_at_ms=_now_ms(),
        answer="one two three",
        outcome="client_disconnect",
        undelivered=4,
    )
    messages = encoded([stream])
    first = await start_loader()
    if restart:
        await produce(kafka_bootstrap, topic, messages[:-1])  # all but the completed event
        await first.wait_records(len(messages) - 1)
        await first.stop()
        first = await start_loader()
        messages = messages[-1:]
    await produce(kafka_bootstrap, topic, messages)
    await first.wait_records(len(messages))
    rows = await clickhouse.rows(
        "SELECT response_text, choices, upstream_response_text, outcome FROM exchanges FINAL"
    )
    assert rows == [("one two", ["one two"], "one two three", "client_disconnect")]
    assert first.sink.stats.readbacks == (1 if restart else 0)


async def test_a_row_clickhouse_rejects_is_dead_lettered_and_the_rest_loaded(
    kafka_bootstrap: str, topic: str, start_loader: LoaderFactory, clickhouse: ClickHouse
) -> None:
    now = _now_ms()
    good = [
        Exchange(request_id=uuid7(now + i, f"good{i}"), received_at_ms=now + i) for i in range(6)
    ]
    # A producer bug: an id that is no UUID. Avro takes any string; the tables' CHECK refuses it.
    bad = Exchange(request_id="not-a-uuid", received_at_ms=now, stream=False)
    messages = encoded([*good[:3], bad, *good[3:]])
    await produce(kafka_bootstrap, topic, messages)
    loader = await start_loader()
    await loader.wait_records(len(messages))

    bad_values = {value for key, value in messages if key == "not-a-uuid"}
    dead = await read_deadletters(kafka_bootstrap, topic, len(bad_values))
    assert {value for value, _ in dead} == bad_values  # original bytes, request/chunk/completed
    for _, headers in dead:
        assert b"request_id_is_uuid" in headers["reason"]
        assert headers["source_topic"] == topic.encode()
    rows = await clickhouse.rows("SELECT count(), uniqExact(request_id) FROM exchanges")
    assert rows == [(6, 6)]
    rows = await clickhouse.rows("SELECT count() FROM chunks_raw")
    assert rows == [(6 * 7,)]  # every good chunk once: the bisection's sub-batches deduplicate
    assert loader.runner.stats.deadlettered == len(bad_values)


async def test_undecodable_bytes_are_dead_lettered_and_the_partition_moves_on(
    kafka_bootstrap: str, topic: str, start_loader: LoaderFactory, clickhouse: ClickHouse
) -> None:
    now = _now_ms()
    before = encoded([Exchange(request_id=uuid7(now, "before"), received_at_ms=now)])
    after = encoded([Exchange(request_id=uuid7(now + 1, "after"), received_at_ms=now + 1)])
    garbage = [("k1", b"\x00garbage that is not avro"), ("k2", b"\xc3\x01" + b"\xff" * 12)]
    messages = [*before, *garbage, *after]
    await produce(kafka_bootstrap, topic, messages)
    loader = await start_loader()
    await loader.wait_records(len(messages))

    dead = await read_deadletters(kafka_bootstrap, topic, 2)
    # Keyed like the source records, so they may sit on different dead-letter partitions.
    assert sorted(value for value, _ in dead) == sorted(value for _, value in garbage)
    assert all(headers["reason"].startswith(b"undecodable") for _, headers in dead)
    rows = await clickhouse.rows("SELECT count() FROM exchanges")
    assert rows == [(2,)]


async def test_loader_refuses_a_schema_newer_than_it_knows(
    kafka_bootstrap: str, topic: str, start_loader: LoaderFactory, database_url: str
) -> None:
    sink = ClickHouseSink(ClickHouse(database_url))
    await sink.start()
    known = load_migrations()[-1].version
    await sink.clickhouse.command(
        "INSERT INTO schema_migrations (version, name) VALUES ({v:UInt32}, 'from_the_future')",
        {"v": known + 1},
    )
    await sink.stop()
    with pytest.raises(SchemaTooNewError) as caught:
        await start_loader()
    message = str(caught.value)
    assert f"version {known + 1}" in message
    assert f"only up to {known}" in message
    assert "upgrade Logorhythms" in message
