"""A local Kafka cluster: N combined broker+controller nodes (KRaft), one JVM each.

Every node is a :class:`KafkaBroker` with its own ports (broker and controller), data dir and
log, formatted with one cluster id and the same initial controllers (a dynamic quorum, Kafka
4.x). The cluster carries the no-loss settings (``properties.no_loss_properties``): replication
factor N, ``min.insync.replicas=2``, no unclean leader election.

The layout (cluster id, ports, directory ids) is written to ``<data_dir>/cluster.json`` when
the cluster is first formatted and read back by every later start: the controllers' addresses
are part of the formatted metadata, so a restart must use the same ports.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from deploy.local.kafka.broker import KafkaBroker
from deploy.local.kafka.errors import KafkaSetupError
from deploy.local.kafka.ports import HOST, free_ports, port_in_use
from deploy.local.kafka.properties import Quorum, Voter, new_cluster_id, new_directory_id

__all__ = ["LAYOUT_FILE", "KafkaCluster"]

LAYOUT_FILE = "cluster.json"


def _layout(data_dir: Path, nodes: int, port: int | None) -> tuple[Quorum, dict[int, int]]:
    """The cluster's quorum and broker ports: read back from its layout file, else made new.

    A new cluster given ``port`` puts its brokers on ``port .. port+N-1`` and its controllers
    on the N ports after them; without ``port`` every port is a free one.
    """
    path = data_dir / LAYOUT_FILE
    if path.exists():
        try:
            saved: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            voters = tuple(
                Voter(int(n["node_id"]), int(n["controller_port"]), str(n["directory_id"]))
                for n in saved["nodes"]
            )
            broker_ports = {int(n["node_id"]): int(n["port"]) for n in saved["nodes"]}
            quorum = Quorum(str(saved["cluster_id"]), voters)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KafkaSetupError(
                f"{path} is unreadable ({exc}); remove {data_dir} to start a new cluster"
            ) from exc
        if len(voters) != nodes:
            raise KafkaSetupError(
                f"the cluster in {data_dir} has {len(voters)} nodes, not {nodes}; ask for "
                f"{len(voters)} or use another data dir"
            )
        if port is not None and min(broker_ports.values()) != port:
            raise KafkaSetupError(
                f"the cluster in {data_dir} was formatted with broker ports from "
                f"{min(broker_ports.values())}, not {port}; use that port or another data dir"
            )
        return quorum, broker_ports
    ports = free_ports(2 * nodes) if port is None else list(range(port, port + 2 * nodes))
    voters = tuple(Voter(i + 1, ports[nodes + i], new_directory_id()) for i in range(nodes))
    return Quorum(new_cluster_id(), voters), {i + 1: ports[i] for i in range(nodes)}


def _save_layout(data_dir: Path, quorum: Quorum, broker_ports: Mapping[int, int]) -> None:
    path = data_dir / LAYOUT_FILE
    if path.exists():
        return
    nodes = [
        {
            "node_id": v.node_id,
            "port": broker_ports[v.node_id],
            "controller_port": v.controller_port,
            "directory_id": v.directory_id,
        }
        for v in quorum.voters
    ]
    text = json.dumps({"cluster_id": quorum.cluster_id, "nodes": nodes}, indent=2) + "\n"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)


class KafkaCluster:
    """``nodes`` local Kafka nodes forming one cluster; start, stop and reach any node.

    ``data_dir/node-<id>/`` holds each node's data (as :class:`KafkaBroker` lays it out);
    each node logs to ``logs_dir/kafka-<id>.log`` (default: its own data dir's
    ``broker.log``). ``heap_mb`` is per node.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        nodes: int = 3,
        port: int | None = None,
        heap_mb: int = 256,
        logs_dir: Path | None = None,
        libs_dir: Path | None = None,
        quick_jit: bool = False,
        env: Mapping[str, str] | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> None:
        if nodes < 1:
            raise ValueError("a cluster has at least one node")
        self.data_dir = Path(data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.quorum, broker_ports = _layout(self.data_dir, nodes, port)
        self.nodes: list[KafkaBroker] = [
            KafkaBroker(
                self.data_dir / f"node-{voter.node_id}",
                port=broker_ports[voter.node_id],
                controller_port=voter.controller_port,
                heap_mb=heap_mb,
                log_file=logs_dir / f"kafka-{voter.node_id}.log" if logs_dir else None,
                libs_dir=libs_dir,
                properties=properties,
                quick_jit=quick_jit,
                env=env,
                node_id=voter.node_id,
                quorum=self.quorum,
            )
            for voter in self.quorum.voters
        ]
        self.last_start_seconds: float | None = None

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap_servers for node in self.nodes)

    def node(self, node_id: int) -> KafkaBroker:
        for candidate in self.nodes:
            if candidate.node_id == node_id:
                return candidate
        raise KeyError(f"no node {node_id} in this cluster (nodes {self.node_ids})")

    @property
    def node_ids(self) -> list[int]:
        return [node.node_id for node in self.nodes]

    def __repr__(self) -> str:
        running = sum(node.is_running for node in self.nodes)
        return f"<KafkaCluster {self.bootstrap_servers} {running}/{len(self.nodes)} running>"

    def log_tails(self, lines: int = 30) -> str:
        """Each node's latest log lines, headed by the node and its log file."""
        return "\n".join(
            f"--- node {n.node_id} ({n.log_file}) ---\n{n.log_tail(lines)}" for n in self.nodes
        )

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, timeout_s: float = 90, progress: Callable[[str], None] | None = None) -> None:
        """Launch every node that is not running, then wait until each serves requests.

        All JVMs start before any is waited for: no node is ready until the controller quorum
        has a majority. On failure every node is killed (data kept) and the error carries each
        node's log tail. ``progress`` hears which node a slow start is still waiting for.
        """
        began = time.monotonic()
        taken = [
            f"{HOST}:{port} (node {node.node_id})"
            for node in self.nodes
            if not node.is_running
            for port in (node.port, node.controller_port)
            if port_in_use(port)
        ]
        if taken:
            raise KafkaSetupError(
                f"Kafka cluster ports already in use: {', '.join(taken)} (another cluster or "
                f"broker still running? see {self.data_dir}/node-*/broker.pid); stop it or "
                "choose another port"
            )
        _save_layout(self.data_dir, self.quorum, {n.node_id: n.port for n in self.nodes})
        try:
            self._each(lambda node: node.launch(timeout_s))
            for node in self.nodes:
                node.wait_until_ready(
                    max(timeout_s - (time.monotonic() - began), 1.0),
                    progress=progress,
                    began=began,
                )
        except KafkaSetupError as exc:
            self.kill()
            raise KafkaSetupError(f"{exc}\n{self.log_tails()}") from exc
        self.last_start_seconds = time.monotonic() - began

    def stop(self, timeout_s: float = 20) -> None:
        """Stop every node (SIGTERM, SIGKILL after ``timeout_s``), all at once. Idempotent."""
        self._each(lambda node: node.stop(timeout_s=timeout_s))

    def kill(self) -> None:
        """SIGKILL every node; data on disk is kept. Idempotent."""
        self._each(lambda node: node.kill())

    def _each(self, action: Callable[[KafkaBroker], None]) -> None:
        with ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
            for result in [pool.submit(action, node) for node in self.nodes]:
                result.result()  # re-raises the first failure

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
