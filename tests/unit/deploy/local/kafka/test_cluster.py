"""KafkaCluster before it starts: each node's ports and dirs, the layout kept for restarts,
ports checked before any JVM is launched."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from deploy.local.kafka.cluster import LAYOUT_FILE, KafkaCluster
from deploy.local.kafka.errors import KafkaSetupError
from deploy.local.kafka.ports import free_ports


def test_each_node_has_its_own_ports_and_dirs_in_one_quorum(tmp_path: Path) -> None:
    cluster = KafkaCluster(tmp_path, nodes=3, port=29092)
    assert cluster.node_ids == [1, 2, 3]
    assert [n.port for n in cluster.nodes] == [29092, 29093, 29094]
    assert [n.controller_port for n in cluster.nodes] == [29095, 29096, 29097]
    assert cluster.bootstrap_servers == "127.0.0.1:29092,127.0.0.1:29093,127.0.0.1:29094"
    assert len({n.data_dir for n in cluster.nodes}) == 3
    assert len({n.log_file for n in cluster.nodes}) == 3
    assert all(n.quorum is cluster.quorum for n in cluster.nodes)
    assert len({v.directory_id for v in cluster.quorum.voters}) == 3
    assert cluster.node(2).controller_port == 29096
    with pytest.raises(KeyError, match="no node 4"):
        cluster.node(4)


def test_free_ports_are_picked_when_none_is_given(tmp_path: Path) -> None:
    cluster = KafkaCluster(tmp_path, nodes=3)
    ports = [p for n in cluster.nodes for p in (n.port, n.controller_port)]
    assert len(set(ports)) == 6


def test_a_taken_port_stops_the_start_before_any_node_runs(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        base = free_ports(1)[0]
        cluster = KafkaCluster(tmp_path / "c", nodes=3, port=base)
        cluster.nodes[1].controller_port = taken  # as if another process held it
        with pytest.raises(KafkaSetupError, match=f"127.0.0.1:{taken} \\(node 2\\)"):
            cluster.start()
    assert not any(n.is_running for n in cluster.nodes)
    assert not (tmp_path / "c" / LAYOUT_FILE).exists()  # nothing formatted, nothing kept


def test_a_restart_reads_the_layout_back(tmp_path: Path) -> None:
    first = KafkaCluster(tmp_path, nodes=3)
    layout = {
        "cluster_id": first.quorum.cluster_id,
        "nodes": [
            {"node_id": v.node_id, "port": n.port, "controller_port": v.controller_port,
             "directory_id": v.directory_id}
            for v, n in zip(first.quorum.voters, first.nodes, strict=True)
        ],
    }  # fmt: skip
    (tmp_path / LAYOUT_FILE).write_text(json.dumps(layout))
    again = KafkaCluster(tmp_path, nodes=3)
    assert again.quorum == first.quorum
    assert [n.port for n in again.nodes] == [n.port for n in first.nodes]


def test_a_layout_that_does_not_fit_is_refused_with_what_to_do(tmp_path: Path) -> None:
    (tmp_path / LAYOUT_FILE).write_text(
        json.dumps({"cluster_id": "x", "nodes": [
            {"node_id": 1, "port": 29092, "controller_port": 29093, "directory_id": "d"}
        ]})
    )  # fmt: skip
    with pytest.raises(KafkaSetupError, match="has 1 nodes, not 3"):
        KafkaCluster(tmp_path, nodes=3)
    with pytest.raises(KafkaSetupError, match="broker ports from 29092, not 39092"):
        KafkaCluster(tmp_path, nodes=1, port=39092)
    (tmp_path / LAYOUT_FILE).write_text("{not json")
    with pytest.raises(KafkaSetupError, match=r"unreadable.*remove"):
        KafkaCluster(tmp_path, nodes=3)
