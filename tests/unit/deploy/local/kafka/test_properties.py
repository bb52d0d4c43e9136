"""server.properties and the cluster id: what the one-node broker is told."""

from __future__ import annotations

import base64
from pathlib import Path

from deploy.local.kafka.properties import new_cluster_id, render_server_properties
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
