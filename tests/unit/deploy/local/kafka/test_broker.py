"""KafkaBroker before it serves: ports fixed at construction, idempotent stop, a slow start
reported while it is waited for."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deploy.local.kafka import broker as broker_module
from deploy.local.kafka.broker import KafkaBroker
from deploy.local.kafka.errors import KafkaSetupError


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


def test_a_slow_start_says_what_it_waits_for_until_it_gives_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several JVMs on a busy host can take minutes: the operator hears which node is still
    awaited, for how long and its last answer, instead of silence and then a failure."""
    monkeypatch.setattr(broker_module, "PROGRESS_EVERY_S", 0.3)
    broker = KafkaBroker(tmp_path)  # nothing listens on its port: a JVM still booting
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    broker._proc = stand_in
    heard: list[str] = []
    try:
        with pytest.raises(KafkaSetupError, match="was not ready after"):
            broker.wait_until_ready(1.5, progress=heard.append)
    finally:
        stand_in.kill()
        stand_in.wait()
        broker._proc = None
    assert len(heard) >= 2, heard
    for line in heard:
        assert f"Kafka node 1 on 127.0.0.1:{broker.port} not ready after" in line, line
        assert "refused" in line.lower(), line  # the last answer the probe got
        assert str(broker.log_file) in line, line
    assert "waiting up to" in heard[0], heard
