"""The Datadog forwarder end to end: Kafka → forwarder process → test agent + DogStatsD socket."""

from __future__ import annotations

import signal
import uuid
from typing import Any

from tests.integration.datadog.conftest import (
    ApmTestAgent,
    EventProducer,
    Exchange,
    ForwarderFactory,
    StatsdListener,
    free_port,
    poll,
)

TRACE_ID = 0x1234_5678_9ABC
PARENT_ID = 0x42_4242


def _rid() -> str:
    return str(uuid.uuid4())


def _by_request(spans: list[dict[str, Any]], request_ids: set[str]) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {rid: [] for rid in request_ids}
    for span in spans:
        for tag in span["tags"]:
            if tag.startswith("request_id:") and tag[len("request_id:") :] in found:
                found[tag[len("request_id:") :]].append(span)
    return found


def _parse(line: str) -> tuple[str, str, str, frozenset[str]]:
    """``name:value|type|#tags`` → its parts, tags as a set (their order is the client's)."""
    head, kind, tags = line.split("|")
    name, value = head.rsplit(":", 1)
    return name, value, kind, frozenset(tags.removeprefix("#").split(","))


def _metric_lines(statsd: StatsdListener, name: str) -> list[str]:
    return [line for line in statsd.drain() if line.startswith(name + ":")]


async def test_exchange_becomes_llm_span_metrics_and_linked_trace(
    test_agent: ApmTestAgent,
    forwarder_factory: ForwarderFactory,
    events: EventProducer,
    statsd: StatsdListener,
) -> None:
    ok = Exchange(_rid(), model="gpt-4o-mini-2024-07-18")
    failed = Exchange(
        _rid(), model="my-private-finetune", status=500, outcome="upstream_http_error"
    )
    headers = [
        ("x-datadog-trace-id", str(TRACE_ID).encode()),
        ("x-datadog-parent-id", str(PARENT_ID).encode()),
        ("x-datadog-sampling-priority", b"1"),
    ]
    await events.send(ok.request_id, ok.events(), headers=headers)
    await events.send(failed.request_id, failed.events())
    forwarder = forwarder_factory(agent_port=test_agent.port)
    forwarder.start()

    spans = await poll(
        "both LLM spans",
        lambda: (
            found
            if all(
                (
                    found := _by_request(
                        test_agent.llmobs_spans(), {ok.request_id, failed.request_id}
                    )
                ).values()
            )
            else None
        ),
    )
    (span,) = spans[ok.request_id]
    meta = span["meta"]
    assert meta["span"] == {"kind": "llm"}
    assert meta["model_name"] == "gpt-4o-mini-2024-07-18"  # the real name; metrics fold it
    assert meta["model_provider"] == "openai"
    assert meta["input"]["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "name three primes"},
    ]
    assert meta["output"]["messages"] == [{"role": "assistant", "content": "2, 3 and 5"}]
    assert meta["metadata"]["temperature"] == 0.2
    assert meta["metadata"]["stream"] is True
    assert meta["metadata"]["content_complete"] is True
    assert meta["metadata"]["tool_calls"] == 0
    assert span["metrics"] == {
        "input_tokens": 11,
        "output_tokens": 3,
        "total_tokens": 14,
        "time_to_first_token": 0.05,
    }
    assert span["start_ns"] == ok.received_at_us * 1000
    # ddtrace's public finish() takes float seconds: sub-microsecond rounding only.
    assert abs(span["duration"] - 300_000_000) < 1_000
    assert span["status"] == "ok"
    assert "outcome:ok" in span["tags"]
    assert "ml_app:logorhythms" in span["tags"]
    # Parented to the proxy's trace carried in the Kafka headers.
    assert span["_dd"]["apm_trace_id"] == f"{TRACE_ID:032x}"

    (bad,) = spans[failed.request_id]
    assert bad["status"] == "error"
    assert bad["meta"]["error"]["type"] == "http_500"
    assert bad["meta"]["error"]["message"] == "upstream said no"
    assert bad["meta"]["model_name"] == "my-private-finetune"  # content keeps the real name

    apm = [s for trace in test_agent.traces() for s in trace if s.get("trace_id") == TRACE_ID]
    assert [s["parent_id"] for s in apm] == [PARENT_ID]

    # DogStatsD: names, types, values, tags; the unknown model folds to "other".
    counts = await poll(
        "exchange counters",
        lambda: c if len(c := _metric_lines(statsd, "logorhythms.exchange.count")) >= 2 else None,
    )
    base = {"endpoint:/v1/chat/completions", "provider:openai", "stream:true",
            "env:test", "service:logorhythms-test"}  # fmt: skip
    assert sorted(map(_parse, counts)) == sorted([
        ("logorhythms.exchange.count", "1", "c",
         frozenset({*base, "model:gpt-4o-mini", "outcome:ok", "status_class:2xx"})),
        ("logorhythms.exchange.count", "1", "c",
         frozenset({*base, "model:other", "outcome:upstream_http_error", "status_class:5xx"})),
    ])  # fmt: skip
    lines = statsd.drain()
    assert any(
        line.startswith("logorhythms.exchange.ttft_ms:50.0|d|#") and "model:gpt-4o-mini" in line
        for line in lines
    )
    assert any(line.startswith("logorhythms.exchange.duration_ms:300.0|d|#") for line in lines)
    assert any(line.startswith("logorhythms.exchange.tokens_in:11|c|#") for line in lines)
    assert any(
        line.startswith("logorhythms.exchange.errors:1|c|#") and "error_type:http_500" in line
        for line in lines
    )
    assert any(line.startswith("logorhythms.consumer.batch.size_records:") for line in lines)
    assert any(
        _parse(line)[:3] == ("logorhythms.consumer.lag_records", "0", "g")
        and {"consumer:datadog", "partition:0"} <= _parse(line)[3]
        for line in lines
    )
    # Never a request id, an IP or free text in a tag.
    assert not any(ok.request_id in line or "127.0.0.1" in line for line in lines)
    assert forwarder.stop() == 0


async def test_restart_mid_stream_neither_loses_nor_doubles_spans(
    test_agent: ApmTestAgent, forwarder_factory: ForwarderFactory, events: EventProducer
) -> None:
    first, open_one, last = (
        Exchange(_rid()),
        Exchange(_rid(), pieces=("one", " two", " three")),
        Exchange(_rid()),
    )
    await events.send(first.request_id, first.events())
    # The open exchange: request and first chunks now, the rest after the restart.
    head = [open_one.request(), *open_one.chunks()[:2]]
    tail = [*open_one.chunks()[2:], open_one.completed()]
    await events.send(open_one.request_id, head)
    await events.send(last.request_id, last.events())

    forwarder = forwarder_factory(agent_port=test_agent.port)
    forwarder.start()
    ids = {first.request_id, open_one.request_id, last.request_id}
    await poll("the two finished exchanges", lambda: all(
        _by_request(test_agent.llmobs_spans(), {first.request_id, last.request_id}).values()
    ))  # fmt: skip
    assert forwarder.stop(signal.SIGTERM) == 0

    await events.send(open_one.request_id, tail)
    after = Exchange(_rid())
    await events.send(after.request_id, after.events())
    ids.add(after.request_id)
    restarted = forwarder_factory(agent_port=test_agent.port)
    restarted.start()
    spans = await poll("every exchange", lambda: s if all(
        (s := _by_request(test_agent.llmobs_spans(), ids)).values()
    ) else None)  # fmt: skip
    # The open exchange was rebuilt from the re-read events: its whole answer, once.
    (span,) = spans[open_one.request_id]
    assert span["meta"]["output"]["messages"][0]["content"] == "one two three"

    # Kill it hard after everything was handed over: the next start re-reads nothing new.
    assert restarted.stop(signal.SIGKILL) == -signal.SIGKILL
    third = forwarder_factory(agent_port=test_agent.port)
    third.start()
    final = Exchange(_rid())
    await events.send(final.request_id, final.events())
    ids.add(final.request_id)
    spans = await poll("the exchange after the kill", lambda: s if all(
        (s := _by_request(test_agent.llmobs_spans(), ids)).values()
    ) else None)  # fmt: skip
    assert {rid: len(found) for rid, found in spans.items()} == dict.fromkeys(ids, 1)
    assert third.stop() == 0


async def test_no_agent_keeps_running_says_so_once_and_loses_nothing(
    forwarder_factory: ForwarderFactory, events: EventProducer
) -> None:
    port = free_port()
    forwarder = forwarder_factory(agent_port=port)
    forwarder.start()
    exchange = Exchange(_rid())
    await events.send(exchange.request_id, exchange.events())
    await poll("the forwarder to notice", lambda: "not taking spans" in forwarder.log())
    assert forwarder.running
    # A stop during the outage is clean and commits nothing of the held batch.
    assert forwarder.stop() == 0
    log = forwarder.log()
    assert log.count("no Datadog agent reachable") == 1
    assert log.count("not taking spans") == 1
    assert "it is forwarded next time" in log

    agent = ApmTestAgent(f"http://127.0.0.1:{port}", port)
    restarted = forwarder_factory(agent_port=port)
    restarted.start()
    await poll(
        "the restarted forwarder to hit the outage", lambda: "not taking spans" in restarted.log()
    )
    agent.start()  # the agent comes (back) while the forwarder retries
    try:
        spans = await poll("the held span", lambda: s if (
            s := _by_request(agent.llmobs_spans(), {exchange.request_id})[exchange.request_id]
        ) else None, timeout_s=60)  # fmt: skip
        assert len(spans) == 1
        assert spans[0]["meta"]["output"]["messages"][0]["content"] == "2, 3 and 5"
        assert restarted.stop() == 0
        assert "Datadog takes spans again" in restarted.log()
    finally:
        agent.stop()
