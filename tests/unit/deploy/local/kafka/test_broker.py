"""KafkaBroker before it starts: ports fixed at construction, idempotent stop."""

from __future__ import annotations

from pathlib import Path

import pytest

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
