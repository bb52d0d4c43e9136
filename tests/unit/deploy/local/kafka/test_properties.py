"""server.properties, the cluster and directory ids: what a broker, alone or in a cluster, is
told."""

from __future__ import annotations

import base64
from pathlib import Path

from deploy.local.kafka.properties import (
    Quorum,
    Voter,
    new_cluster_id,
    new_directory_id,
    render_server_properties,
)
from schemas.limits import KAFKA_MAX_MESSAGE_BYTES


def _parse_properties(text: str) -> dict[str, str]:
    pairs = [line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")]
    keys = [key for key, _ in pairs]
    assert len(keys) == len(set(keys)), f"duplicate keys in {keys}"
    return {key: value for key, value in pairs}


# -- server.properties ------------------------------------------------------------------------


def test_server_properties_describe_one_combined_kraft_node(tmp_path: Path) -> None:
    text = render_server_properties(port=19092, controller_port=19093, log_dir=tmp_path / "d")
    props = _parse_properties(text)

    assert text.endswith("\n")
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["log.dirs"] == str(tmp_path / "d")
    assert props["num.partitions"] == "3"
    assert props["auto.create.topics.enable"] == "true"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    # Internal topics must be creatable on a single node.
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
    ):
        assert props[key] == "1", key
    # Fast re-registration after a crash: heartbeat well inside the session timeout.
    assert int(props["broker.heartbeat.interval.ms"]) < int(props["broker.session.timeout.ms"])
    # Events as large as the proxy makes them (a 32 MiB body whole) are taken and replicated.
    assert props["message.max.bytes"] == str(KAFKA_MAX_MESSAGE_BYTES)
    assert props["replica.fetch.max.bytes"] == str(KAFKA_MAX_MESSAGE_BYTES)


def test_server_properties_overrides_win(tmp_path: Path) -> None:
    props = _parse_properties(
        render_server_properties(
            port=1,
            controller_port=2,
            log_dir=tmp_path,
            overrides={"auto.create.topics.enable": "false", "log.retention.ms": "1000"},
        )
    )
    assert props["auto.create.topics.enable"] == "false"
    assert props["log.retention.ms"] == "1000"


def test_cluster_id_is_kafka_style_base64_uuid() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cluster_id in ids:
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


# -- a node of a cluster -----------------------------------------------------------------------


def _quorum() -> Quorum:
    voters = tuple(Voter(n, 19100 + n, new_directory_id()) for n in (1, 2, 3))
    return Quorum(new_cluster_id(), voters)


def test_a_cluster_node_finds_a_dynamic_quorum_and_keeps_its_metadata_apart(
    tmp_path: Path,
) -> None:
    quorum = _quorum()
    props = _parse_properties(
        render_server_properties(
            port=19092,
            controller_port=19102,
            log_dir=tmp_path / "data",
            node_id=2,
            quorum=quorum,
            metadata_log_dir=tmp_path / "metadata",
        )
    )
    assert props["node.id"] == "2"
    assert "controller.quorum.voters" not in props  # a dynamic quorum has no static list
    assert props["controller.quorum.bootstrap.servers"] == (
        "127.0.0.1:19101,127.0.0.1:19102,127.0.0.1:19103"
    )
    assert props["advertised.listeners"] == (
        "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19102"
    )
    assert props["log.dirs"] == str(tmp_path / "data")
    assert props["metadata.log.dir"] == str(tmp_path / "metadata")


def test_a_cluster_node_carries_the_no_loss_settings(tmp_path: Path) -> None:
    props = _parse_properties(
        render_server_properties(
            port=1, controller_port=2, log_dir=tmp_path, quorum=_quorum(), node_id=1
        )
    )
    assert props["default.replication.factor"] == "3"
    assert props["min.insync.replicas"] == "2"
    assert props["unclean.leader.election.enable"] == "false"
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "share.coordinator.state.topic.replication.factor",
    ):
        assert props[key] == "3", key
    assert props["transaction.state.log.min.isr"] == "2"
    assert props["share.coordinator.state.topic.min.isr"] == "2"


def test_initial_controllers_name_each_voter_with_its_directory_id() -> None:
    quorum = Quorum("abc", (Voter(1, 9101, "dirA"), Voter(2, 9102, "dirB")))
    assert quorum.initial_controllers == "1@127.0.0.1:9101:dirA,2@127.0.0.1:9102:dirB"
    assert quorum.bootstrap_servers == "127.0.0.1:9101,127.0.0.1:9102"


def test_a_directory_id_is_a_kafka_uuid_like_a_cluster_id() -> None:
    ids = {new_directory_id() for _ in range(50)}
    assert len(ids) == 50
    for text in ids:
        assert len(text) == 22
        assert not text.startswith("-")
        assert len(base64.urlsafe_b64decode(text + "==")) == 16
