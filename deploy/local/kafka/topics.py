"""Topics created explicitly (idempotent), through aiokafka's admin client."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

__all__ = ["create_topic"]


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
