"""The pure parts of deploy/local/kafka.py: config rendering, ports, paths, the probe codec."""

from __future__ import annotations

import base64
import os
import socket
import stat
import struct
from pathlib import Path

import pytest

from deploy.local import kafka
from deploy.local.kafka import (
    KAFKA_VERSION,
    BrokerAddress,
    KafkaBroker,
    KafkaSetupError,
    cds_archive_path,
    decode_metadata_response,
    encode_metadata_request,
    ensure_kafka_jars,
    free_ports,
    java_command,
    kafka_cache_dir,
    new_cluster_id,
    render_server_properties,
)


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


# -- ports ----------------------------------------------------------------------------------


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(3)
    assert len(set(ports)) == 3
    for port in ports:
        assert 0 < port < 65536
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_broker_picks_two_distinct_free_ports(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path)
    assert broker.port != broker.controller_port
    assert broker.bootstrap_servers == f"127.0.0.1:{broker.port}"
    assert broker.pid is None
    assert not broker.is_running


def test_broker_keeps_given_ports(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path, port=19092, controller_port=19093)
    assert (broker.port, broker.controller_port) == (19092, 19093)
    only_port = KafkaBroker(tmp_path, port=19092)
    assert only_port.port == 19092
    assert only_port.controller_port not in (0, 19092)


def test_broker_rejects_equal_ports(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must differ"):
        KafkaBroker(tmp_path, port=19092, controller_port=19092)


def test_stop_and_kill_are_idempotent_before_start(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path)
    broker.stop()
    broker.kill()
    with pytest.raises(KafkaSetupError, match="not running"):
        broker.pause()


# -- cache dir and jars ------------------------------------------------------------------------


def test_cache_dir_defaults_to_home_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LOGORHYTHMS_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert kafka_cache_dir() == tmp_path / ".cache" / "logorhythms" / f"kafka-{KAFKA_VERSION}"


def test_cache_dir_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LOGORHYTHMS_CACHE_DIR", str(tmp_path / "c"))
    assert kafka_cache_dir() == tmp_path / "c" / f"kafka-{KAFKA_VERSION}"


def _complete_libs(cache: Path) -> Path:
    libs = cache / "libs"
    libs.mkdir(parents=True)
    (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").write_bytes(b"")
    (libs / ".logorhythms-complete").write_text(kafka._marker_text(), encoding="utf-8")
    return libs


def test_ensure_jars_returns_complete_cache_without_maven(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    libs = _complete_libs(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no mvn anywhere
    messages: list[str] = []
    assert ensure_kafka_jars(tmp_path, progress=messages.append) == libs
    assert messages == []


def test_ensure_jars_without_maven_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(KafkaSetupError, match=r"mvn.*not on PATH") as info:
        ensure_kafka_jars(tmp_path, progress=lambda _: None)
    assert "Install Maven" in str(info.value)
    assert not (tmp_path / "libs").exists()


def test_ensure_jars_reports_maven_failure_with_its_output(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_mvn = bin_dir / "mvn"
    fake_mvn.write_text(
        "#!/bin/sh\necho '[INFO] Scanning for projects...'\n"
        "echo '[ERROR] Could not transfer artifact: Network is unreachable'\nexit 1\n"
    )
    fake_mvn.chmod(fake_mvn.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    messages: list[str] = []

    with pytest.raises(KafkaSetupError, match="failed") as info:
        ensure_kafka_jars(tmp_path / "cache", progress=messages.append)

    assert "Network is unreachable" in str(info.value)
    assert "repo.maven.apache.org" in str(info.value)
    assert any("Downloading Kafka" in m for m in messages)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [".lock"]  # no leftovers


def test_stale_marker_is_not_complete(tmp_path: Path) -> None:
    libs = _complete_libs(tmp_path)
    (libs / ".logorhythms-complete").write_text("kafka=0.0.1\n", encoding="utf-8")
    assert not kafka._libs_complete(libs)


def test_cds_archive_path_is_stable_and_keyed_on_jars(tmp_path: Path) -> None:
    libs = _complete_libs(tmp_path)
    java = tmp_path / "java"
    java.write_bytes(b"#!")
    first = cds_archive_path(str(java), libs)
    assert first == cds_archive_path(str(java), libs)
    assert first.parent == tmp_path / "cds"
    (libs / ".logorhythms-complete").write_text("other", encoding="utf-8")
    assert cds_archive_path(str(java), libs) != first


# -- JVM command line ---------------------------------------------------------------------------


def test_java_command_keeps_heap_small_and_loads_log4j_config(tmp_path: Path) -> None:
    cmd = java_command(
        java="java", libs=tmp_path, main_class="kafka.Kafka", args=["s.properties"], heap_mb=256
    )
    assert cmd[0] == "java"
    assert cmd[-2:] == ["kafka.Kafka", "s.properties"]
    assert "-Xmx256m" in cmd
    assert "-Xms128m" in cmd
    assert "-XX:+UseSerialGC" in cmd
    assert "-XX:TieredStopAtLevel=1" not in cmd
    assert f"-Dlog4j2.configurationFile={kafka.LOG4J2_CONFIG}" in cmd
    assert cmd[cmd.index("-cp") + 1] == f"{tmp_path}/*"
    assert kafka.LOG4J2_CONFIG.is_file()
    assert kafka.POM_PATH.is_file()


def test_java_command_quick_jit(tmp_path: Path) -> None:
    cmd = java_command(
        java="java",
        libs=tmp_path,
        main_class="X",
        args=[],
        heap_mb=64,
        quick_jit=True,
        extra_jvm_args=["-Dx=1"],
    )
    assert "-XX:TieredStopAtLevel=1" in cmd
    assert "-Xms64m" in cmd
    assert cmd.index("-Dx=1") < cmd.index("-cp")


def test_pom_and_code_agree_on_the_kafka_version() -> None:
    pom = kafka.POM_PATH.read_text(encoding="utf-8")
    assert f"<kafka.version>{KAFKA_VERSION}</kafka.version>" in pom


# -- cluster id and the Metadata probe ---------------------------------------------------------


def test_cluster_id_is_kafka_style_base64_uuid() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cluster_id in ids:
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_metadata_request_encoding() -> None:
    frame = encode_metadata_request(42, client_id="probe")
    (size,) = struct.unpack_from(">i", frame)
    assert size == len(frame) - 4
    api_key, version, correlation, client_len = struct.unpack_from(">hhih", frame, 4)
    assert (api_key, version, correlation, client_len) == (3, 4, 42, 5)
    assert frame[14:19] == b"probe"
    assert frame[19:] == struct.pack(">ib", 0, 0)  # no topics, no auto-creation


def _metadata_response(correlation: int, brokers: list[tuple[int, str, int, str | None]]) -> bytes:
    out = struct.pack(">iii", correlation, 0, len(brokers))
    for node_id, host, port, rack in brokers:
        out += struct.pack(">ih", node_id, len(host)) + host.encode()
        out += struct.pack(">i", port)
        out += (
            struct.pack(">h", -1) if rack is None else struct.pack(">h", len(rack)) + rack.encode()
        )
    return out + struct.pack(">hi", -1, 1) + struct.pack(">i", 0)  # cluster id, controller, topics


def test_metadata_response_decoding() -> None:
    payload = _metadata_response(7, [(1, "127.0.0.1", 9092, None), (2, "h", 1, "rack-a")])
    assert decode_metadata_response(payload, 7) == [
        BrokerAddress(1, "127.0.0.1", 9092),
        BrokerAddress(2, "h", 1),
    ]
    assert decode_metadata_response(_metadata_response(8, []), 8) == []


def test_metadata_response_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="correlation"):
        decode_metadata_response(_metadata_response(7, []), 8)
    with pytest.raises(ValueError, match=r"malformed|truncated"):
        decode_metadata_response(_metadata_response(7, [(1, "host", 1, None)])[:20], 7)
