"""Fixtures for every suite: one real Kafka broker per test session, fresh topic names.

``KAFKA_BOOTSTRAP_SERVERS`` set: the tests use that broker and start none. Otherwise the
first test that asks for Kafka starts a private single-node broker (jars from
``~/.cache/logorhythms``, downloaded on first use; ``make kafka-jars`` pre-fetches them) in a
session temp dir, and the session stops it at the end.

A module that needs replicas asks for ``kafka_cluster``: a private three-node cluster for that
module alone (its own ports and dirs), stopped when the module ends, its nodes' logs printed
under any test of the module that fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from deploy.local.kafka import KafkaBroker, KafkaCluster, ensure_kafka_jars

EXTERNAL_BROKER_ENV = "KAFKA_BOOTSTRAP_SERVERS"
CLUSTER_NODES = 3
FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Iterator[None]:
    """Remember on the test item whether it failed, so its fixtures can add evidence."""
    report = yield
    if report.failed:  # type: ignore[attr-defined]
        item.stash[FAILED] = True
    return report


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


@pytest.fixture(scope="session")
def kafka_replication_factor() -> int:
    """The replication factor of the topics the fixtures create (a module may override it)."""
    return 1


@pytest.fixture(scope="module")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """A private three-node cluster (RF 3, min ISR 2, no unclean election) for one module.

    Always its own, even with ``KAFKA_BOOTSTRAP_SERVERS`` set: its tests kill its nodes.
    """
    cluster = KafkaCluster(
        tmp_path_factory.mktemp("kafka-cluster"),
        nodes=CLUSTER_NODES,
        libs_dir=ensure_kafka_jars(),
        quick_jit=True,
    )
    cluster.start()
    print(f"{CLUSTER_NODES}-node Kafka cluster started in {cluster.last_start_seconds:.1f}s")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster(kafka_cluster: KafkaCluster, request: pytest.FixtureRequest) -> Iterator[KafkaCluster]:
    """The module's cluster for a test that may kill, stop or wipe its nodes.

    Afterwards every node's log tail is printed if the test failed, and every node that is
    down is started again, so the next test finds all of them running.
    """
    yield kafka_cluster
    if request.node.stash.get(FAILED, False):
        print(kafka_cluster.log_tails(40))
    kafka_cluster.start()
