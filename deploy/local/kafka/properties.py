"""The broker's ``server.properties`` (one combined broker+controller KRaft node) and its
cluster id: pure text, no I/O."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from pathlib import Path

from deploy.local.kafka.ports import HOST
from schemas.limits import KAFKA_MAX_MESSAGE_BYTES

__all__ = ["NODE_ID", "new_cluster_id", "render_server_properties"]

NODE_ID = 1

_BASE_PROPERTIES: dict[str, str] = {
    "process.roles": "broker,controller",
    "controller.listener.names": "CONTROLLER",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "inter.broker.listener.name": "PLAINTEXT",
    "num.partitions": "3",
    "default.replication.factor": "1",
    "min.insync.replicas": "1",
    # Kept on for now (producers may publish to a topic nobody created yet); create_topic()
    # exists so callers can create topics explicitly and this can be turned off later.
    "auto.create.topics.enable": "true",
    # Internal topics: replication factor 1 (there is one node) and few partitions. The
    # default 50 partitions for __consumer_offsets make the first consumer-group join on a
    # 2-core machine noticeably slower and buy nothing on a single node.
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "3",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "3",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "share.coordinator.state.topic.num.partitions": "3",
    "group.initial.rebalance.delay.ms": "0",
    # After a crash (kill -9) the restarted node's controller still holds the dead
    # incarnation's registration and rejects the new one (DUPLICATE_BROKER_REGISTRATION)
    # until that session expires: with the default 9 s timeout / 2 s heartbeat a restart
    # after kill() took ~13 s instead of ~5 s. Both run in the same JVM over loopback.
    "broker.session.timeout.ms": "3000",
    "broker.heartbeat.interval.ms": "500",
    # A request body is captured whole in one event up to 32 MiB (schemas/limits.py): the
    # broker's default 1 MiB would refuse it. Topics inherit this unless they set their own.
    "message.max.bytes": str(KAFKA_MAX_MESSAGE_BYTES),
    "replica.fetch.max.bytes": str(KAFKA_MAX_MESSAGE_BYTES),
}


def new_cluster_id() -> str:
    """A KRaft cluster id, same format as ``kafka-storage.sh random-uuid`` (saves a JVM run).

    That is a random v4 UUID as unpadded URL-safe base64 (22 chars); like Kafka's
    ``Uuid.randomUuid()`` it never starts with '-' (it would parse as a CLI flag).
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not text.startswith("-"):
            return text


def render_server_properties(
    *,
    port: int,
    controller_port: int,
    log_dir: Path,
    node_id: int = NODE_ID,
    host: str = HOST,
    overrides: Mapping[str, str] | None = None,
) -> str:
    """The broker's ``server.properties`` text (single combined broker+controller node)."""
    props = dict(_BASE_PROPERTIES)
    props.update(
        {
            "node.id": str(node_id),
            "controller.quorum.voters": f"{node_id}@{host}:{controller_port}",
            "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://{host}:{port}",
            "log.dirs": str(log_dir),
        }
    )
    props.update(overrides or {})
    lines = ["# Written by deploy/local/kafka on every start; edits are overwritten."]
    lines += [f"{key}={_escape_property(value)}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def _escape_property(value: str) -> str:
    # java.util.Properties treats backslash as an escape; paths on Windows would need it.
    return value.replace("\\", "\\\\")
