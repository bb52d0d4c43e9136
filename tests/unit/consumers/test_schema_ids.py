"""A registry outage holds the batch: the learner retries until it answers or the loop stops."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.structs import ConsumerRecord

from consumers.schema_ids import SchemaIdLearner
from consumers.settings import ConsumerSettings
from deploy.local.kafka.ports import free_ports
from schemas import Codec
from schemas.registry import RegistryError


def _record(value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("t", 0, 0, 0, 0, b"k", value, None, len(b"k"), len(value), [])


def test_no_registry_configured_means_no_learner() -> None:
    assert SchemaIdLearner.for_settings(ConsumerSettings(), Codec()) is None


async def test_an_unreachable_registry_is_retried_until_the_loop_stops() -> None:
    settings = ConsumerSettings(
        schema_registry_url=f"http://127.0.0.1:{free_ports(1)[0]}/apis/ccompat/v7",
        retry_initial_backoff_s=0.01,
        retry_max_backoff_s=0.02,
    )
    learner = SchemaIdLearner.for_settings(settings, Codec())
    assert learner is not None
    stop = asyncio.Event()
    task = asyncio.create_task(learner.learn([_record(b"\x00\x00\x00\x00\x07body")], stop))
    async with asyncio.timeout(10):
        while learner.retries < 2:  # noqa: ASYNC110 (a deadline-bounded poll of a counter)
            await asyncio.sleep(0.01)
    assert not task.done()  # still holding the batch
    stop.set()
    with pytest.raises(RegistryError, match="failed"):
        await asyncio.wait_for(task, 10)


async def test_single_object_records_need_no_registry() -> None:
    settings = ConsumerSettings(
        schema_registry_url=f"http://127.0.0.1:{free_ports(1)[0]}/apis/ccompat/v7"
    )
    learner = SchemaIdLearner.for_settings(settings, Codec())
    assert learner is not None
    await asyncio.wait_for(learner.learn([_record(b"\xc3\x01" + bytes(8))], asyncio.Event()), 5)
    assert learner.retries == 0
