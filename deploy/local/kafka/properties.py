"""The broker's ``server.properties`` (a combined broker+controller KRaft node, alone or one of
a cluster), its cluster and directory ids, and a cluster's no-loss settings: pure text, no I/O."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from deploy.local.kafka.ports import HOST
from schemas.limits import KAFKA_MAX_MESSAGE_BYTES

__all__ = [
    "NODE_ID",
    "Quorum",
    "Voter",
    "new_cluster_id",
    "new_directory_id",
    "no_loss_properties",
    "render_server_properties",
]

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


@dataclass(frozen=True, slots=True)
class Voter:
    """One controller of a dynamic KRaft quorum: its node id, controller port and the directory
    id its metadata log dir is formatted with (``--initial-controllers`` names all three)."""

    node_id: int
    controller_port: int
    directory_id: str


@dataclass(frozen=True, slots=True)
class Quorum:
    """The controllers of a multi-node cluster (KIP-853 dynamic quorum, Kafka 4.x).

    Every node is formatted with the same cluster id and the same ``--initial-controllers``
    and finds the quorum through ``controller.quorum.bootstrap.servers``; there is no static
    ``controller.quorum.voters`` list.
    """

    cluster_id: str
    voters: tuple[Voter, ...]
    host: str = HOST

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"{self.host}:{v.controller_port}" for v in self.voters)

    @property
    def initial_controllers(self) -> str:
        """The value of ``kafka-storage format --initial-controllers``."""
        return ",".join(
            f"{v.node_id}@{self.host}:{v.controller_port}:{v.directory_id}" for v in self.voters
        )


def no_loss_properties(replicas: int) -> dict[str, str]:
    """What a cluster of ``replicas`` nodes needs so that an acknowledged write survives a node.

    Every topic (ours, the consumer offsets, the internal ones) keeps ``replicas`` copies; a
    write is acknowledged (the producer asks ``acks=all``) only once at least two of them have
    it; a replica that missed writes never becomes leader (no unclean election), so a write is
    refused rather than lost when too few replicas are in sync.
    """
    min_isr = str(min(2, replicas))
    return {
        "default.replication.factor": str(replicas),
        "min.insync.replicas": min_isr,
        "unclean.leader.election.enable": "false",
        "offsets.topic.replication.factor": str(replicas),
        "transaction.state.log.replication.factor": str(replicas),
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": str(replicas),
        "share.coordinator.state.topic.min.isr": min_isr,
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
    quorum: Quorum | None = None,
    metadata_log_dir: Path | None = None,
    overrides: Mapping[str, str] | None = None,
) -> str:
    """The broker's ``server.properties`` text (one combined broker+controller node).

    Without ``quorum`` the node is its own single voter (a static one-node quorum). With it,
    the node is one of the quorum's voters and, for a cluster, keeps the cluster's metadata in
    ``metadata_log_dir``, apart from the partitions' ``log_dir``: a lost or wiped log dir then
    costs the node its partition replicas (which it copies back from the others), not its
    place in the controller quorum.
    """
    props = dict(_BASE_PROPERTIES)
    props.update(
        {
            "node.id": str(node_id),
            "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://{host}:{port}",
            "log.dirs": str(log_dir),
        }
    )
    if quorum is None:
        props["controller.quorum.voters"] = f"{node_id}@{host}:{controller_port}"
    else:
        props["controller.quorum.bootstrap.servers"] = quorum.bootstrap_servers
        props["advertised.listeners"] += f",CONTROLLER://{host}:{controller_port}"
        props.update(no_loss_properties(len(quorum.voters)))
    if metadata_log_dir is not None:
        props["metadata.log.dir"] = str(metadata_log_dir)
    props.update(overrides or {})
    lines = ["# Written by deploy/local/kafka on every start; edits are overwritten."]
    lines += [f"{key}={_escape_property(value)}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def new_directory_id() -> str:
    """A log dir's directory id: a Kafka ``Uuid`` in the same text form as a cluster id."""
    return new_cluster_id()


def _escape_property(value: str) -> str:
    # java.util.Properties treats backslash as an escape; paths on Windows would need it.
    return value.replace("\\", "\\\\")
