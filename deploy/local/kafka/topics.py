"""Topics created explicitly (idempotent) and their partitions' leaders and in-sync replicas,
through aiokafka's admin client."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

__all__ = ["PartitionState", "create_topic", "describe_partitions"]


@dataclass(frozen=True, slots=True)
class PartitionState:
    """Who leads one partition and which replicas are in sync (-1: no leader)."""

    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


async def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = 3,
    *,
    replication_factor: int = 1,
    configs: Mapping[str, str] | None = None,
    timeout_s: float = 30,
) -> None:
    """Create ``name`` unless it exists, then wait until every partition has a leader.

    Idempotent: an existing topic (whatever its partition count) is left as is.
    """
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            topic = NewTopic(
                name, partitions, replication_factor, topic_configs=dict(configs or {})
            )
            response = await admin.create_topics([topic])
            for entry in response.topic_errors:  # (topic, error_code[, error_message])
                code = entry[1]
                if code and code != TopicAlreadyExistsError.errno:
                    detail = entry[2] if len(entry) > 2 else ""
                    raise for_code(code)(f"create topic {entry[0]!r}: {detail}")
            # The controller has committed the topic; wait until this broker serves it too,
            # so a producer started right after us does not begin with metadata retries.
            while True:
                if _all_partitions_led(await admin.describe_topics([name]), name):
                    return
                await asyncio.sleep(0.05)
    finally:
        await admin.close()


def _all_partitions_led(described: list[dict[str, object]], name: str) -> bool:
    for topic in described:
        if topic.get("topic") != name or topic.get("error_code"):
            continue
        parts = topic.get("partitions")
        if isinstance(parts, list) and parts:
            return all(
                isinstance(p, dict) and not p.get("error_code") and p.get("leader", -1) >= 0
                for p in parts
            )
    return False


async def describe_partitions(
    bootstrap: str, topic: str, *, timeout_s: float = 10
) -> dict[int, PartitionState]:
    """Each partition of ``topic`` with its leader, replicas and in-sync replicas, as the
    cluster's metadata says now. Raises the topic's Kafka error (e.g. it does not exist).

    A node that is down is skipped: the client may first pick one it still believes alive
    (retriable errors are retried on another node until ``timeout_s``).
    """
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            while True:
                try:
                    described = await admin.describe_topics([topic])
                    break
                except KafkaError as exc:
                    if not exc.retriable:
                        raise
                    await asyncio.sleep(0.1)
    finally:
        await admin.close()
    states: dict[int, PartitionState] = {}
    for entry in described:
        if entry.get("topic") != topic:
            continue
        if entry.get("error_code"):
            raise for_code(entry["error_code"])(f"describe topic {topic!r}")
        for part in entry.get("partitions") or []:
            states[int(part["partition"])] = PartitionState(
                partition=int(part["partition"]),
                leader=int(part["leader"]),
                replicas=tuple(int(r) for r in part["replicas"]),
                isr=tuple(int(r) for r in part["isr"]),
            )
    return states
