"""B5, B3(b), B11, K5: faults that need replicas, on a private three-node Kafka cluster.

One cluster (``kafka_cluster``: RF 3, ``min.insync.replicas=2``, no unclean leader election)
serves the whole module; after each test every node is running again. Each test runs the
pipeline (in-process proxy and loader, embedded ClickHouse) under steady traffic and ends with
the served == captured oracle: every request id a client was given is in ClickHouse once (with
FINAL), its chunks 1..n.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.sink import ClickHouseSink
from consumers.runner import Runner
from consumers.settings import ConsumerSettings
from deploy.local.kafka import KafkaCluster, create_topic, describe_partitions
from proxy.app import PUBLISHER
from proxy.journal import Journal
from proxy.publisher import Publisher
from tests.integration.conftest import ProxyFactory
from tests.integration.datadog.conftest import ApmTestAgent, Forwarder, free_port
from tests.integration.faults.oracle import wait_reconciled
from tests.integration.faults.traffic import Served, SteadyTraffic, burst, eventually, get_json
from tests.integration.test_publisher_hand_over import keys_in_topic

pytestmark = pytest.mark.slow

KAFKA_TIMEOUT_S = 2.0  # the proxy's send deadline where a test waits for it to miss


@pytest.fixture(scope="module")
def kafka_bootstrap(kafka_cluster: KafkaCluster) -> str:
    """Every fixture of this module (the pipeline's topic, proxy and loader) uses the cluster."""
    return kafka_cluster.bootstrap_servers


@pytest.fixture(scope="module")
def kafka_replication_factor() -> int:
    return 3


def _all_ok(served: list[Served]) -> None:
    assert served, "no traffic was served"
    assert all(s.status == 200 for s in served), [s.status for s in served if s.status != 200]
    streams = [s for s in served if s.body.startswith(b"data:")]
    assert streams, "no streamed response among the traffic"
    assert all(s.body.endswith(b"data: [DONE]\n\n") for s in streams)


async def test_partition_leader_sigkilled_under_load_loses_and_doubles_nothing(
    pipeline_factory: ProxyFactory, cluster: KafkaCluster
) -> None:
    """B5: the leader of a partition dies; another replica takes over, clients never notice."""
    p = await pipeline_factory()
    traffic = SteadyTraffic(p.proxy_url)
    task = asyncio.create_task(traffic.run())
    try:
        await traffic.more_rounds(3, what="traffic before the kill")
        leader = (await describe_partitions(p.bootstrap, p.topic))[0].leader
        await asyncio.to_thread(cluster.node(leader).kill)
        killed_at = time.monotonic()

        async def moved() -> bool:
            states = await describe_partitions(p.bootstrap, p.topic)
            return all(s.leader not in (leader, -1) for s in states.values())

        await eventually(moved, what=f"every partition led by a node other than {leader}")
        failover_s = time.monotonic() - killed_at
        # The old leader comes back while traffic goes on (and the next test has all three).
        rejoin = asyncio.create_task(asyncio.to_thread(cluster.node(leader).start))
        await traffic.more_rounds(3, what="traffic after the failover")
    finally:
        traffic.stop.set()
        served = await task
    _all_ok(served)
    result = await wait_reconciled(p.clickhouse, [s.request_id for s in served])
    await rejoin
    stats = p.proxy_app[PUBLISHER].stats
    print(f"node {leader} killed; leaders moved in {failover_s:.1f}s; {len(served)} served; "
          f"{result}; raw dup rows {result.dup_rows_raw}; journaled {stats.journaled}")  # fmt: skip
    assert result.exact, result
    assert stats.dropped == 0


async def test_two_of_three_down_fails_closed_then_replays_when_one_returns(
    pipeline_factory: ProxyFactory, cluster: KafkaCluster
) -> None:
    """B3(b): with one node of three, Kafka takes no write (acks=all, min ISR 2); the proxy
    serves, journals, and replays everything once a second node is back."""
    p = await pipeline_factory(kafka_timeout_s=KAFKA_TIMEOUT_S)
    publisher = p.proxy_app[PUBLISHER]
    before = await burst(p.proxy_url, 5)
    await eventually(lambda: publisher.stats.delivered == publisher.stats.published,
                     what="the warm-up delivered")  # fmt: skip
    # A producer of our own, as the proxy's (acks=all, idempotent), on a topic of its own with
    # the same settings: it shows what Kafka itself says to a write while two nodes are down.
    probe_topic = f"{p.topic}.probe"
    await create_topic(p.bootstrap, probe_topic, partitions=3, replication_factor=3)
    probe = AIOKafkaProducer(bootstrap_servers=p.bootstrap, acks="all", enable_idempotence=True)
    await probe.start()
    try:
        await probe.partitions_for(probe_topic)
        survivor, *down = cluster.node_ids
        await asyncio.gather(*(asyncio.to_thread(cluster.node(n).kill) for n in down))

        during = [*await burst(p.proxy_url, 10),
                  *await burst(p.proxy_url, 4, stream=True, words=8)]  # fmt: skip
        deadline = time.monotonic() + 10
        while (ready := await get_json(f"{p.proxy_url}/readyz"))[1]["status"] != "degraded":
            assert time.monotonic() < deadline, ready
            await asyncio.sleep(0.1)
        delivered = publisher.stats.delivered
        during += await burst(p.proxy_url, 10)
        during += await burst(p.proxy_url, 4, stream=True, words=8)
        # Fails closed: a write to any partition is not acknowledged (waited for: three of the
        # proxy's send deadlines), and the proxy, retrying its journal meanwhile, got no
        # acknowledgement either.
        sends = [await probe.send(probe_topic, b"probe", partition=i) for i in range(3)]
        done, _ = await asyncio.wait(sends, timeout=3 * KAFKA_TIMEOUT_S)
        assert not [f for f in done if f.exception() is None], "one node acknowledged a write"
        assert publisher.stats.delivered == delivered, "the proxy had a write acknowledged"
        assert publisher.stats.journaled > 0

        await asyncio.to_thread(cluster.node(down[0]).start)
        await eventually(lambda: publisher.stats.replayed == publisher.stats.journaled,
                         what="the journal replayed to two nodes of three")  # fmt: skip
        rejoin = asyncio.create_task(asyncio.to_thread(cluster.node(down[1]).start))
        result = await wait_reconciled(p.clickhouse, [s.request_id for s in [*before, *during]])
        await rejoin
        # With two nodes back, the probe's writes go through (or fail): none is left pending.
        await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), 30)
    finally:
        with contextlib.suppress(TimeoutError):  # a failed test may leave the nodes down
            await asyncio.wait_for(probe.stop(), 10)
    print(f"nodes {down} down, {survivor} alone: {len(during)} served meanwhile; after node "
          f"{down[0]} returned: {result}; raw dup rows {result.dup_rows_raw}")  # fmt: skip
    _all_ok([*before, *during])
    assert result.exact, result
    stats = publisher.stats
    assert stats.replayed > 0
    assert stats.dropped == 0


async def test_a_spill_while_kafka_took_part_of_a_drain_counts_each_event_once(
    cluster: KafkaCluster, tmp_path: Path
) -> None:
    """One partition's leader goes silent while the others answer: Kafka takes part of a
    linger's batches, the rest miss their deadline and the publisher spills. The journal is
    acknowledged a drain at a time, so the batches Kafka took are replayed too: they count as
    journaled and resent, not as delivered from memory, and journaled == replayed at the end."""
    topic = f"partial-drain-{os.getpid()}-{time.monotonic_ns()}"
    bootstrap = cluster.bootstrap_servers
    await create_topic(bootstrap, topic, partitions=3, replication_factor=1)
    leaders = {
        s.partition: s.leader for s in (await describe_partitions(bootstrap, topic)).values()
    }
    silent = leaders[0]
    assert set(leaders.values()) != {silent}, f"one node leads every partition: {leaders}"
    publisher = Publisher(
        bootstrap_servers=bootstrap,
        topic=topic,
        journal=Journal(tmp_path / "journal"),
        kafka_timeout_s=KAFKA_TIMEOUT_S,
        linger_ms=200,
    )
    await publisher.start()
    keys = [f"exchange-{n}".encode() for n in range(600)]
    try:
        await asyncio.wait_for(publisher.flush(), 30)
        await asyncio.to_thread(cluster.node(silent).pause)
        try:
            for key in keys:  # one drain, batches for every partition
                publisher.publish(key, b"an event " * 20)
            await eventually(lambda: publisher.stats.spills == 1, what="the publisher spilled")
            taken = publisher.stats.resent
        finally:
            await asyncio.to_thread(cluster.node(silent).resume)
        await asyncio.wait_for(publisher.flush(), 120)
        stats = publisher.stats
        assert taken > 0, f"Kafka took no batch of the drain before the spill: {stats}"
        assert stats.published == (
            stats.delivered - stats.replayed + stats.journaled + stats.dropped + publisher.in_memory
        ), stats
        assert stats.journaled == stats.replayed == len(keys), stats  # the whole drain, once
        assert stats.delivered == len(keys), stats
        # The silent node's batch, abandoned at its deadline, may still be written once it wakes:
        # counted by its events too, never more than the drain held.
        assert taken <= stats.resent <= len(keys), stats
    finally:
        await publisher.stop()
    seen = await keys_in_topic(bootstrap, topic, len(keys), distinct=True)  # copies included
    assert set(seen) == set(keys)


async def test_node_with_its_log_dir_wiped_rejoins_and_catches_up(
    pipeline_factory: ProxyFactory, cluster: KafkaCluster
) -> None:
    """B11: a node loses its partitions (disk replaced): it copies them back from the others
    and is in sync again for every partition, while clients are served and nothing is lost."""
    p = await pipeline_factory()
    traffic = SteadyTraffic(p.proxy_url)
    task = asyncio.create_task(traffic.run())
    node = cluster.node(cluster.node_ids[-1])
    try:
        await traffic.more_rounds(3, what="traffic before the wipe")
        await asyncio.to_thread(node.kill)
        await asyncio.to_thread(shutil.rmtree, node.log_dir)
        await traffic.more_rounds(2, what="traffic while the node is away")
        await asyncio.to_thread(node.start)

        async def in_sync() -> bool:
            states = await describe_partitions(p.bootstrap, p.topic)
            return all(len(s.isr) == 3 for s in states.values())

        await eventually(in_sync, what=f"node {node.node_id} back in every ISR", timeout_s=60)
        await traffic.more_rounds(2, what="traffic after the rejoin")
    finally:
        traffic.stop.set()
        served = await task
    _all_ok(served)
    copied = sum(f.stat().st_size for f in node.log_dir.glob(f"{p.topic}-*/*.log") if f.is_file())
    result = await wait_reconciled(p.clickhouse, [s.request_id for s in served])
    print(f"node {node.node_id} wiped: {copied} bytes of {p.topic} copied back; {result}")
    assert copied > 0, "the wiped node holds none of the topic's data"
    assert result.exact, result


def _forwarder(bootstrap: str, topic: str, agent: ApmTestAgent, log: Path) -> Forwarder:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DD_", "LOGORHYTHMS_"))}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        LOGORHYTHMS_TOPIC=topic,
        LOGORHYTHMS_DATADOG_GROUP=f"{topic}-datadog",
        LOGORHYTHMS_BATCH_MAX_AGE_S="0.1",
        DD_TRACE_AGENT_URL=agent.url,
        DD_AGENT_HOST="127.0.0.1",
        DD_DOGSTATSD_PORT=str(free_port()),  # nobody listens: metrics are not under test here
        DD_SERVICE="logorhythms-test",
        DD_ENV="test",
    )
    return Forwarder(env, log)


def _assigned(forwarder: Forwarder) -> list[int]:
    """The partitions the forwarder process was last assigned, from its log."""
    lines = [line for line in forwarder.log().splitlines() if "assigned partitions: [" in line]
    if not lines:
        return []
    listed = lines[-1].rpartition("assigned partitions: [")[2].rstrip("]")
    return [int(part) for part in listed.split(",") if part.strip()]


async def _stop(traffic: SteadyTraffic, task: asyncio.Task[list[Served]]) -> list[Served]:
    traffic.stop.set()
    return await task


def _spans_per_request(agent: ApmTestAgent, ids: set[str]) -> dict[str, int]:
    found = dict.fromkeys(ids, 0)
    for span in agent.llmobs_spans():
        for tag in span["tags"]:
            request_id = tag.removeprefix("request_id:")
            if request_id != tag and request_id in found:
                found[request_id] += 1
    return found


@pytest.fixture
def apm_agent() -> Iterator[ApmTestAgent]:
    port = free_port()
    agent = ApmTestAgent(f"http://127.0.0.1:{port}", port)
    agent.start()
    yield agent
    agent.stop()


async def test_two_forwarders_and_two_loaders_rebalancing_mid_stream_count_once(
    pipeline_factory: ProxyFactory,
    cluster: KafkaCluster,
    clickhouse_url: str,
    kafka_bootstrap: str,
    unique_topic: str,
    apm_agent: ApmTestAgent,
    tmp_path: Path,
) -> None:
    """K5: in each consumer group a second member joins mid-stream, then the first leaves;
    every exchange is one row in ClickHouse and one LLM span in Datadog."""
    first = _forwarder(kafka_bootstrap, unique_topic, apm_agent, tmp_path / "forwarder-1.log")
    second = _forwarder(kafka_bootstrap, unique_topic, apm_agent, tmp_path / "forwarder-2.log")
    first.start()  # the pipeline's fixture made the topic; the forwarder starts meanwhile
    loader_task: asyncio.Task[Any] | None = None
    task: asyncio.Task[list[Served]] | None = None
    try:
        p = await pipeline_factory()
        # Two loaders share one embedded ClickHouse only inside one process (chdb opens a
        # directory from one process); as separate processes each would need its own.
        second_loader = Runner(
            settings=ConsumerSettings(
                kafka_bootstrap_servers=p.bootstrap,
                topic=p.topic,
                group_id=f"{p.topic}-clickhouse",
                deadletter_topic=f"{p.topic}.deadletter",
                batch_max_age_s=0.2,
            ),
            sink=ClickHouseSink(ClickHouse(clickhouse_url)),
        )
        traffic = SteadyTraffic(p.proxy_url)
        task = asyncio.create_task(traffic.run())
        await eventually(lambda: _assigned(first) == [0, 1, 2],
                         what="the first forwarder owns every partition", timeout_s=60)  # fmt: skip
        await traffic.more_rounds(3, what="traffic before the joins")
        loader_task = asyncio.create_task(second_loader.run())
        second.start()
        await eventually(lambda: second_loader.stats.records > 0,
                         what="the second loader got partitions", timeout_s=60)  # fmt: skip
        await eventually(lambda: bool(_assigned(second)),
                         what="the second forwarder got partitions", timeout_s=60)  # fmt: skip
        await traffic.more_rounds(3, what="traffic with two members each")
        p.runner.request_stop()  # the first loader leaves mid-stream ...
        assert await asyncio.to_thread(first.stop) == 0  # ... and the first forwarder
        await eventually(lambda: _assigned(second) == [0, 1, 2],
                         what="the second forwarder owns all", timeout_s=60)  # fmt: skip
        await traffic.more_rounds(3, what="traffic after the leaves")
        _all_ok(served := await _stop(traffic, task))
        ids = {s.request_id for s in served}
        result = await wait_reconciled(p.clickhouse, ids)
        deadline = time.monotonic() + 60
        while not all((spans := _spans_per_request(apm_agent, ids)).values()):
            assert time.monotonic() < deadline, {i: n for i, n in spans.items() if n != 1}
            await asyncio.sleep(0.25)
    finally:
        if task is not None:
            traffic.stop.set()
            await asyncio.gather(task, return_exceptions=True)
        if loader_task is not None:
            second_loader.request_stop()
            await asyncio.wait_for(loader_task, 30)
        for forwarder in (first, second):
            if forwarder.running:
                await asyncio.to_thread(forwarder.stop, signal.SIGKILL)
    doubled = {i: n for i, n in spans.items() if n != 1}
    print(f"{len(ids)} exchanges across the rebalances: {result}; "
          f"raw dup rows {result.dup_rows_raw}; spans not exactly one: {doubled}")  # fmt: skip
    assert result.exact, result
    assert not doubled
