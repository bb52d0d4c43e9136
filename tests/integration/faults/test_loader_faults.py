"""The loader against poison records, a refusing ClickHouse, a full replay and an older writer
schema (P1, C1/C4, P4, P3), and the negative control proving the oracle can fail."""

from __future__ import annotations

import asyncio
import io
import os
from datetime import UTC, datetime
from pathlib import Path

import fastavro
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata, TopicPartition
from fastavro.schema import parse_schema

from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.sink import ClickHouseSink
from consumers.runner import Runner
from consumers.settings import ConsumerSettings
from deploy.local.kafka import create_topic
from schemas import Codec, EventType
from schemas.codec import MAGIC, SCHEMA_DIR, load_schema, schema_fingerprint
from tests.integration.conftest import Pipeline
from tests.integration.faults.oracle import reconcile, wait_reconciled
from tests.integration.faults.traffic import burst, eventually

CANARY = b"POISON-CANARY-5d1e"
OPERATIONS_DOC = Path(__file__).resolve().parents[3] / "docs" / "OPERATIONS.md"


async def _dead_letters(p: Pipeline, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    consumer = AIOKafkaConsumer(
        f"{p.topic}.deadletter", bootstrap_servers=p.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(30):
            while len(found) < count:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    found.extend(records)
    finally:
        await consumer.stop()
    return found


async def _committed(p: Pipeline) -> dict[TopicPartition, OffsetAndMetadata]:
    admin = AIOKafkaAdminClient(bootstrap_servers=p.bootstrap)
    await admin.start()
    try:
        offsets: dict[TopicPartition, OffsetAndMetadata] = await admin.list_consumer_group_offsets(
            f"{p.topic}-clickhouse"
        )
        return offsets
    finally:
        await admin.close()


async def _end_offsets(p: Pipeline) -> dict[TopicPartition, int]:
    """The topic's end offsets, for partitions that hold events."""
    admin = AIOKafkaAdminClient(bootstrap_servers=p.bootstrap)
    await admin.start()
    try:
        (topic,) = await admin.describe_topics([p.topic])
    finally:
        await admin.close()
    partitions = [TopicPartition(p.topic, part["partition"]) for part in topic["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=p.bootstrap)
    await consumer.start()
    try:
        consumer.assign(partitions)  # without an assignment stop() cancels a coordinator task
        end: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        return {tp: offset for tp, offset in end.items() if offset > 0}
    finally:
        await consumer.stop()


async def test_poison_records_are_dead_lettered_and_partitions_continue(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    """P1: garbage, a wrong marker, an unknown schema and a corrupt body, in every partition."""
    poison = [
        b"\x00garbage " + CANARY,
        b"XY" + os.urandom(8) + CANARY,
        MAGIC + b"\xee" * 8 + CANARY,  # a schema fingerprint nobody knows
    ]
    producer = AIOKafkaProducer(bootstrap_servers=pipeline.bootstrap)
    await producer.start()
    sent: dict[tuple[int, int], bytes] = {}
    try:
        for partition in range(3):
            for value in poison:
                meta = await producer.send_and_wait(
                    pipeline.topic, value, key=b"poison", partition=partition
                )
                sent[(meta.partition, meta.offset)] = value
    finally:
        await producer.stop()
    served = await burst(pipeline.proxy_url, 12)  # after the poison, in every partition

    result = await wait_reconciled(pipeline.clickhouse, [s.request_id for s in served])
    assert result.exact, result
    letters = await _dead_letters(pipeline, len(sent))
    assert len(letters) == len(sent)
    for letter in letters:
        headers = {k: v.decode() for k, v in letter.headers}
        position = (int(headers["source_partition"]), int(headers["source_offset"]))
        assert letter.value == sent[position]  # the original bytes
        assert headers["source_topic"] == pipeline.topic
        assert headers["reason"].startswith("undecodable")
    assert pipeline.runner.stats.deadlettered == len(sent)
    assert CANARY.decode() not in caplog.text  # payloads never reach the logs


async def test_clickhouse_refusing_inserts_pauses_without_commit_then_catches_up(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    """C1/C4: the table is gone (DETACH) while events arrive: retry, no commit, no DLQ."""
    warm = await burst(pipeline.proxy_url, 3)
    assert (await wait_reconciled(pipeline.clickhouse, [s.request_id for s in warm])).exact

    # Rows become visible before the loader commits their offsets: wait for that commit, or it
    # could land during the outage below and look like a commit of refused work.
    end = await _end_offsets(pipeline)
    assert end, "the warm-up burst left no event in the topic"

    async def warm_committed() -> bool:
        offsets = await _committed(pipeline)
        return all(tp in offsets and offsets[tp].offset >= end[tp] for tp in end)

    await eventually(warm_committed, what="the loader committed the warm-up batch")
    committed_before = await _committed(pipeline)
    retries_before = pipeline.runner.stats.retries

    await pipeline.clickhouse.command("DETACH TABLE completions_raw")
    try:
        served = await burst(pipeline.proxy_url, 10)
        await eventually(
            lambda: pipeline.runner.stats.retries >= retries_before + 3,
            what="the loader retried the refused batch",
        )
        assert await _committed(pipeline) == committed_before  # nothing committed meanwhile
    finally:
        await pipeline.clickhouse.command("ATTACH TABLE completions_raw")

    result = await wait_reconciled(pipeline.clickhouse, [s.request_id for s in [*warm, *served]])
    assert result.exact, result
    assert pipeline.runner.stats.deadlettered == 0
    assert "paused, retrying the same batch" in caplog.text


async def test_replay_from_offset_zero_with_a_new_group_changes_nothing(
    pipeline: Pipeline, clickhouse_url: str
) -> None:
    """P4: a backfill re-reads the whole topic into tables that hold it already."""
    served = [
        *await burst(pipeline.proxy_url, 10),
        *await burst(pipeline.proxy_url, 5, stream=True),
    ]
    ids = [s.request_id for s in served]
    first = await wait_reconciled(pipeline.clickhouse, ids)
    assert first.exact, first

    replay = Runner(
        settings=ConsumerSettings(
            kafka_bootstrap_servers=pipeline.bootstrap,
            topic=pipeline.topic,
            group_id=f"{pipeline.topic}-backfill",
            deadletter_topic=f"{pipeline.topic}.deadletter",
            batch_max_age_s=0.2,
        ),
        sink=ClickHouseSink(ClickHouse(clickhouse_url)),
    )
    task = asyncio.create_task(replay.run())
    try:
        await eventually(
            lambda: replay.stats.records >= pipeline.runner.stats.records,
            what="the backfill read the whole topic",
            timeout_s=60,
        )
    finally:
        replay.request_stop()
        await asyncio.wait_for(task, 30)
    again = await reconcile(pipeline.clickhouse, ids)
    print(f"after backfill: {again}; raw dup rows {again.dup_rows_raw}")
    assert again.exact, again
    assert again.with_terminal == first.with_terminal


async def test_negative_control_the_oracle_sees_loss_and_duplicates(
    pipeline: Pipeline,
) -> None:
    """The same batch inserted twice under two tokens is seen raw; a missing terminal is loss."""
    ch = pipeline.clickhouse
    ids = ["00000000-0000-7000-8000-00000000c0de", "00000000-0000-7000-8000-00000000c0df"]
    now = datetime.now(UTC)
    requests = [(i, now, "POST", "/v1/chat/completions") for i in ids]
    columns = ("request_id", "received_at", "method", "path")
    await ch.insert("requests_raw", requests, columns, dedup_token=f"nc-{now}")
    await ch.insert("completions_raw", [(ids[0], 200)], ("request_id", "status"), dedup_token="a")
    await ch.insert("completions_raw", [(ids[0], 200)], ("request_id", "status"), dedup_token="b")
    result = await reconcile(ch, ids)
    assert result.loss == 1  # ids[1] has no terminal event
    assert result.dup_rows_raw == 1  # ids[0]'s terminal twice, before FINAL collapses it
    assert not result.exact
    # And a retry with the *same* token adds nothing (C2): the dedup the loader relies on.
    await ch.insert("completions_raw", [(ids[0], 200)], ("request_id", "status"), dedup_token="b")
    assert (await reconcile(ch, ids)).raw_rows == result.raw_rows

    # The reconciliation queries of docs/OPERATIONS.md run, and see these rows.
    doc = await asyncio.to_thread(OPERATIONS_DOC.read_text)
    block = doc.split("### Reconciliation")[1].split("```sql")[1].split("```")[0]
    queries = [q for q in block.split(";") if q.strip()]
    assert len(queries) == 3
    orphans, duplicates, _ = [await ch.rows(q) for q in queries]
    assert any(row[2] >= 1 for row in orphans)  # ids[1] has no completed event
    assert dict(duplicates)["completions"] >= 1


async def _exchange_events(
    p: Pipeline, request_id: str, codec: Codec
) -> list[ConsumerRecord[bytes, bytes]]:
    consumer = AIOKafkaConsumer(
        p.topic, bootstrap_servers=p.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(20):
            while not any(codec.decode(r.value).type is EventType.COMPLETED for r in found):
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    found += [r for r in records if r.key == request_id.encode()]
    finally:
        await consumer.stop()
    return found


async def test_events_from_an_older_writer_schema_load_with_defaults(
    pipeline: Pipeline, clickhouse_url: str
) -> None:
    """P3, consumer side: a producer still on an older chunk schema (before ``truncated`` and
    ``delivered`` existed) while the loader runs the current one."""
    [original] = await burst(pipeline.proxy_url, 1, stream=True, words=6)
    current = load_schema(SCHEMA_DIR / "chunk.avsc")
    old = {**current, "fields": [f for f in current["fields"]
                                 if f["name"] not in ("truncated", "delivered")]}  # fmt: skip
    codec = Codec(extra_writer_schemas=[old])
    new_id = "01900000-0000-7000-8000-000000000033"
    replayed: list[tuple[bytes, bytes]] = []
    for record in await _exchange_events(pipeline, original.request_id, codec):
        event = codec.decode(record.value)
        fields = {**event.record, "request_id": new_id}
        # Chunks re-written by the old producer, the rest by the current schemas (fastavro, as
        # the decoded records hold datetimes).
        writer = (
            old
            if event.type is EventType.CHUNK
            else load_schema(SCHEMA_DIR / f"{event.type.value}.avsc")
        )
        body = io.BytesIO()
        fastavro.schemaless_writer(body, parse_schema(writer), fields)
        replayed.append((new_id.encode(), MAGIC + schema_fingerprint(writer) + body.getvalue()))

    topic = f"{pipeline.topic}-p3"
    await create_topic(pipeline.bootstrap, topic, partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=pipeline.bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for key, value in replayed:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()
    runner = Runner(
        settings=ConsumerSettings(
            kafka_bootstrap_servers=pipeline.bootstrap,
            topic=topic,
            group_id=f"{topic}-clickhouse",
            deadletter_topic=f"{topic}.deadletter",
            batch_max_age_s=0.2,
        ),
        sink=ClickHouseSink(ClickHouse(clickhouse_url)),
        codec=codec,
    )
    task = asyncio.create_task(runner.run())
    try:
        result = await wait_reconciled(pipeline.clickhouse, [new_id])
    finally:
        runner.request_stop()
        await asyncio.wait_for(task, 30)
    assert result.exact, result
    assert runner.stats.deadlettered == 0
    rows = await pipeline.clickhouse.rows(
        "SELECT delivered, truncated, data FROM chunks_raw FINAL WHERE request_id = {id:String} "
        "ORDER BY seq",
        {"id": new_id},
        binary_columns=("data",),
    )
    assert all(delivered and not truncated for delivered, truncated, _ in rows)  # the defaults
    assert b"".join(data for _, _, data in rows) == original.body
