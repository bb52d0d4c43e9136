"""Fixtures for every suite: one real Kafka broker per test session, fresh topic names.

``KAFKA_BOOTSTRAP_SERVERS`` set: the tests use that broker and start none. Otherwise the
first test that asks for Kafka starts a private single-node broker (jars from
``~/.cache/logorhythms``, downloaded on first use; ``make kafka-jars`` pre-fetches them) in a
session temp dir, and the session stops it at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from deploy.local.kafka import KafkaBroker, ensure_kafka_jars

EXTERNAL_BROKER_ENV = "KAFKA_BOOTSTRAP_SERVERS"


@pytest.fixture(scope="session")
def session_kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker | None]:
    """The session's own broker, or ``None`` when an external one is configured.

    Tests should ask for ``kafka_bootstrap`` (or ``kafka_broker`` for fault injection).
    """
    if os.environ.get(EXTERNAL_BROKER_ENV):
        yield None
        return
    broker = KafkaBroker(
        tmp_path_factory.mktemp("kafka"),
        libs_dir=ensure_kafka_jars(),
        quick_jit=True,  # a throwaway broker: start-up time matters more than peak speed
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(session_kafka_broker: KafkaBroker | None) -> str:
    """``host:port`` of a running Kafka broker (external or the session's own)."""
    if session_kafka_broker is None:
        return os.environ[EXTERNAL_BROKER_ENV]
    return session_kafka_broker.bootstrap_servers


@pytest.fixture
def kafka_broker(session_kafka_broker: KafkaBroker | None) -> Iterator[KafkaBroker]:
    """The session's broker as an object a fault test may pause, kill or restart.

    Afterwards it is resumed / restarted (same port and data) and waited for, so later tests
    find it healthy. Fails -- never skips -- against an external broker, which cannot be
    killed from here: unset KAFKA_BOOTSTRAP_SERVERS to run fault tests.
    """
    if session_kafka_broker is None:
        pytest.fail(
            f"this test needs a broker it can pause/kill, but {EXTERNAL_BROKER_ENV}="
            f"{os.environ.get(EXTERNAL_BROKER_ENV)!r} points at an external one; "
            f"unset {EXTERNAL_BROKER_ENV} to let the tests start their own broker"
        )
    broker = session_kafka_broker
    yield broker
    if broker.is_paused:
        broker.resume()
    if broker.is_running:
        broker.wait_until_ready(timeout_s=30)
    else:
        broker.start()


@pytest.fixture
def unique_topic() -> str:
    """A topic name no other test uses: ``t_<12 hex chars>``."""
    return f"t_{uuid.uuid4().hex[:12]}"
