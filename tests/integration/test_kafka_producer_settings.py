"""The producer knobs ops may turn (linger, compression) change how events travel, never what
arrives: every exchange is still captured exactly once."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import aiohttp
import pytest

from deploy.local.kafka import KafkaBroker, create_topic
from proxy.app import PUBLISHER
from proxy.journal import Journal
from proxy.publisher import Publisher
from tests.integration.conftest import ProxyFactory
from tests.integration.faults.oracle import wait_reconciled
from tests.integration.faults.traffic import call


@pytest.mark.parametrize(("compression", "linger_ms"), [("none", 0), ("gzip", 50), ("lz4", 20)])
async def test_every_compression_and_linger_delivers_every_event(
    pipeline_factory: ProxyFactory, compression: str, linger_ms: int
) -> None:
    p = await pipeline_factory(kafka_compression=compression, kafka_linger_ms=linger_ms)
    async with aiohttp.ClientSession() as session:
        served = await asyncio.gather(
            *(call(session, p.proxy_url, stream=stream, words=5) for stream in (True, False))
        )
    assert [s.status for s in served] == [200, 200]
    result = await wait_reconciled(p.clickhouse, [s.request_id for s in served])
    assert result.exact, result
    stats = p.proxy_app[PUBLISHER].stats
    assert stats.delivered == stats.published
    assert stats.journaled == 0


# The codec in each record batch's attributes (Kafka's message format v2), as the broker stores it.
_CODECS = {"none": 0, "gzip": 1, "lz4": 3, "zstd": 4}
_ATTRIBUTES_AT, _BATCH_HEADER = 21, 12  # after base offset (8), length (4), epoch (4), magic, crc


def stored_codecs(log_dir: Path, topic: str) -> list[int]:
    """The compression codec of every record batch in the topic's log segments on disk."""
    codecs = []
    for segment in log_dir.glob(f"{topic}-*/*.log"):
        data = segment.read_bytes()
        at = 0
        while at + _BATCH_HEADER <= len(data):
            (length,) = struct.unpack_from(">i", data, at + 8)
            (attributes,) = struct.unpack_from(">h", data, at + _ATTRIBUTES_AT)
            codecs.append(attributes & 0x07)
            at += _BATCH_HEADER + length
    return codecs


@pytest.mark.parametrize("compression", [None, "lz4"])  # None: the publisher's default
async def test_batches_reach_the_broker_compressed_as_configured(
    kafka_broker: KafkaBroker, unique_topic: str, tmp_path: Path, compression: str | None
) -> None:
    await create_topic(kafka_broker.bootstrap_servers, unique_topic, partitions=2)
    publisher = Publisher(
        bootstrap_servers=kafka_broker.bootstrap_servers,
        topic=unique_topic,
        journal=Journal(tmp_path),
        **({} if compression is None else {"compression": compression}),
    )
    await publisher.start()
    try:
        for number in range(20):
            publisher.publish(f"exchange-{number}".encode(), b"a chat completion, " * 20)
        await publisher.flush()
    finally:
        await publisher.stop()
    assert publisher.stats.delivered == 20
    codecs = stored_codecs(kafka_broker.log_dir, unique_topic)
    assert codecs, "no record batch found in the broker's log segments"
    assert set(codecs) == {_CODECS[compression or "zstd"]}
