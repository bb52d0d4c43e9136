"""The real broker behind the tests: round trip, crash + restart, pause."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord, TopicPartition

from deploy.local.kafka import HOST, KafkaBroker, create_topic, probe_metadata


async def _produce(bootstrap: str, topic: str, key: bytes, value: bytes) -> tuple[int, int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()
    return meta.partition, meta.offset


async def _read_one(
    consumer: AIOKafkaConsumer, key: bytes, timeout_s: float = 20
) -> ConsumerRecord[bytes, bytes]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=500)
        for records in batches.values():
            for record in records:
                if record.key == key:
                    return record
    pytest.fail(f"no record with key {key!r} within {timeout_s}s")


async def test_produce_and_consume_through_a_consumer_group(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    await create_topic(kafka_bootstrap, unique_topic, partitions=3)
    await create_topic(kafka_bootstrap, unique_topic, partitions=3)  # idempotent
    partition, offset = await _produce(kafka_bootstrap, unique_topic, b"k1", b"hello kafka")

    consumer = AIOKafkaConsumer(
        unique_topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"{unique_topic}-group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        record = await _read_one(consumer, b"k1")
        await consumer.commit()
    finally:
        await consumer.stop()
    assert (record.partition, record.offset, record.value) == (partition, offset, b"hello kafka")


@pytest.mark.slow
async def test_record_survives_kill_and_restart_on_same_port(
    tmp_path: Path, unique_topic: str
) -> None:
    broker = KafkaBroker(tmp_path / "kafka", quick_jit=True)
    try:
        await asyncio.to_thread(broker.start)
        bootstrap, first_pid = broker.bootstrap_servers, broker.pid
        await create_topic(bootstrap, unique_topic, partitions=1)
        partition, offset = await _produce(bootstrap, unique_topic, b"before-crash", b"v1")

        broker.kill()  # SIGKILL: no controlled shutdown, no flush by the broker
        assert not broker.is_running
        with pytest.raises(ConnectionRefusedError):
            probe_metadata(HOST, broker.port, timeout_s=1)

        await asyncio.to_thread(broker.restart)
        assert broker.bootstrap_servers == bootstrap
        assert broker.pid not in (None, first_pid)

        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tp = TopicPartition(unique_topic, partition)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            record = await _read_one(consumer, b"before-crash")
        finally:
            await consumer.stop()
        assert (record.offset, record.value) == (offset, b"v1")
    finally:
        await asyncio.to_thread(broker.stop)
    assert broker.pid is None


def test_paused_broker_stops_answering_until_resumed(kafka_broker: KafkaBroker) -> None:
    assert probe_metadata(HOST, kafka_broker.port)
    kafka_broker.pause()
    assert kafka_broker.is_paused
    with pytest.raises(TimeoutError):  # the kernel accepts the connection; nobody answers
        probe_metadata(HOST, kafka_broker.port, timeout_s=0.5)
    kafka_broker.resume()
    kafka_broker.wait_until_ready(timeout_s=30)
    assert not kafka_broker.is_paused
