"""One trace from the proxy's request span, through the Kafka headers, to the Datadog forwarder's
LLM span and the ClickHouse loader's consume span (each service a real process)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
from aiokafka import AIOKafkaConsumer

from deploy.local.kafka import create_topic
from tests.integration.conftest import FakeUpstream
from tests.integration.datadog.conftest import (
    REPO,
    ApmTestAgent,
    ForwarderFactory,
    StatsdListener,
    free_port,
    poll,
)


def _start(command: str, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "deploy.cli", command], env=env, cwd=REPO, stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip


async def test_proxy_trace_continues_through_kafka_into_the_llm_span(
    test_agent: ApmTestAgent,
    fake_upstream: FakeUpstream,
    kafka_bootstrap: str,
    unique_topic: str,
    forwarder_factory: ForwarderFactory,
    statsd: StatsdListener,
    tmp_path: Path,
) -> None:
    await create_topic(kafka_bootstrap, unique_topic, partitions=1)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DD_", "LOGORHYTHMS_"))}
    env.update(
        OPENAI_BASE_URL=f"{fake_upstream.url}/v1", OPENAI_API_KEY="sk-test-upstream",
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, LOGORHYTHMS_TOPIC=unique_topic,
        LOGORHYTHMS_PORT=str(port), DD_TRACE_AGENT_URL=test_agent.url, DD_AGENT_HOST="127.0.0.1",
        DD_DOGSTATSD_PORT=str(statsd.port), DD_INSTRUMENTATION_TELEMETRY_ENABLED="false",
        DD_REMOTE_CONFIGURATION_ENABLED="false",
    )  # fmt: skip
    proxy = _start("proxy", env, tmp_path / "proxy.log")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

            async def ready() -> bool:
                try:
                    readiness = await client.get("/readyz")
                except httpx.TransportError:
                    return False
                # 200 also while "degraded" (journaling): wait for Kafka itself.
                return readiness.status_code == 200 and readiness.json()["kafka_connected"]

            # Ready = connected to Kafka (the machine may be busy; starting takes a while).
            deadline = time.monotonic() + 60
            while not await ready():
                assert time.monotonic() < deadline, (tmp_path / "proxy.log").read_text()
                await asyncio.sleep(0.2)
            response = await client.post(
                "/v1/chat/completions",
                json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
            )
            assert response.status_code == 200
        request_id = response.headers["x-logorhythms-request-id"]
        proxy.send_signal(signal.SIGTERM)
        assert proxy.wait(30) == 0
    finally:
        if proxy.poll() is None:
            proxy.kill()
            proxy.wait()

    # The request and completed events carry the trace context; chunks do not.
    consumer = AIOKafkaConsumer(
        unique_topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        records = []
        deadline = time.monotonic() + 30
        while len(records) < 3 and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=2000)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    traced = [dict(r.headers) for r in records if "x-datadog-trace-id" in dict(r.headers)]
    assert len(traced) == 2
    trace_id = int(traced[0]["x-datadog-trace-id"])
    assert traced[1]["x-datadog-trace-id"] == traced[0]["x-datadog-trace-id"]

    forwarder = forwarder_factory(agent_port=test_agent.port)
    forwarder.start()
    loader_env = dict(env, CLICKHOUSE_URL=f"chdb://{tmp_path / 'clickhouse'}",
                      LOGORHYTHMS_SQL_PORT=str(free_port()),
                      LOGORHYTHMS_CLICKHOUSE_GROUP=f"{unique_topic}-clickhouse",
                      LOGORHYTHMS_BATCH_MAX_AGE_S="0.1")  # fmt: skip
    loader = _start("load-clickhouse", loader_env, tmp_path / "loader.log")

    def trace_spans() -> list[dict[str, object]] | None:
        spans = [s for t in test_agent.traces() for s in t if s["trace_id"] == trace_id]
        names = {s["name"] for s in spans}
        return spans if names >= {"aiohttp.request", "openai.request", "kafka.consume"} else None

    try:
        spans = await poll("the proxy's, forwarder's and loader's spans in one trace", trace_spans)
    finally:
        loader.send_signal(signal.SIGTERM)
        assert loader.wait(30) == 0
    (server,) = [s for s in spans if s["meta"].get("span.kind") == "server"]  # type: ignore[union-attr]
    assert server["service"] == "logorhythms-proxy"
    assert server["resource"] == "POST /v1/chat/completions"
    # The context in the headers is the proxy's request span; the LLM span is its child.
    assert int(traced[0]["x-datadog-parent-id"]) == server["span_id"]
    (llm,) = [s for s in spans if s["name"] == "openai.request"]
    assert llm["parent_id"] == server["span_id"]
    (consume,) = [s for s in spans if s["name"] == "kafka.consume"]
    assert consume["parent_id"] == server["span_id"]
    assert consume["service"] == "logorhythms-clickhouse"
    assert consume["meta"]["messaging.destination.name"] == unique_topic
    assert consume["meta"]["kafka.partition"] == "0"
    assert llm["meta"]["gen_ai.request.model"] == "gpt-4o"
    assert forwarder.stop() == 0

    # The proxy's last metrics tick at shutdown: one request served.
    served = [line for line in statsd.drain() if line.startswith("logorhythms.proxy.served:")]
    # The loader's pipeline metrics: its insert latency and batch sizes.
    assert any(
        line.startswith("logorhythms.consumer.write.latency_ms:") and "consumer:clickhouse" in line
        for line in statsd.lines
    )
    assert served
    assert served[-1].startswith("logorhythms.proxy.served:1|c")
    # Its request's events were acknowledged by Kafka: their hand-over latency is a distribution.
    latencies = [x for x in statsd.lines if x.startswith("logorhythms.proxy.publish.latency_ms:")]
    assert latencies
    assert all("|d" in line and float(line.split(":")[1].split("|")[0]) >= 0 for line in latencies)
    assert request_id not in " ".join(statsd.lines)
