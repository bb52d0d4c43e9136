"""The pure mapping of decoded events to ClickHouse rows: every column of the raw tables and of
the one ``exchanges`` row per exchange, for OpenAI and Anthropic, streamed and not, with and
without the request event and the upstream's usage."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest

from consumers.clickhouse.rows import (
    CHUNK_COLUMNS,
    COMPLETED_COLUMNS,
    EXCHANGE_COLUMNS,
    REQUEST_COLUMNS,
    exchange_row,
    raw_columns,
)
from consumers.exchange.assemble import ChunkIn
from consumers.exchange.usage import estimate

RID = "0190f1e2-0000-7000-8000-000000000001"
RECEIVED = dt.datetime(2026, 12, 2, 10, 0, 0, tzinfo=dt.UTC)
COMPLETED = RECEIVED + dt.timedelta(seconds=2)


def request(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "request_id": RID, "received_at_us": RECEIVED, "method": "POST",
        "path": "/v1/chat/completions", "query": "a=1",
        "headers": [{"name": "content-type", "value": "application/json"},
                    {"name": "authorization", "value": "fp:abc"}],
        "peer_ip": "127.0.0.1", "forwarded_for": "10.0.0.1", "client_ip": "10.0.0.1",
        "user_agent": "sdk/1", "client_key_fingerprint": "fp:abc",
        "body": orjson.dumps({"model": "gpt-4o", "stream": True, "temperature": 0.5,
                              "messages": [{"role": "system", "content": "be brief"},
                                           {"role": "user", "content": "hi"}]}),
        "body_size": 120, "body_truncated": False, "body_sha256": "ab" * 32,
        "model_requested": "gpt-4o", "stream": True, "endpoint": "/v1/chat/completions",
        "dialect": "openai", "provider": "openai",
        "upstream_url": "http://127.0.0.1:9/v1/chat/completions", "model_sent": "gpt-4o",
        "proxy_instance": "p1",
    }  # fmt: skip
    event.update(overrides)
    return event


def completed(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "request_id": RID, "completed_at_us": COMPLETED, "status": 200, "outcome": "ok",
        "error_type": None, "error_message": None, "upstream_status": 200,
        "response_headers": [{"name": "x-request-id", "value": "req_up_1"},
                             {"name": "content-type", "value": "text/event-stream"}],
        "ttfb_ns": 30_000_000, "duration_ns": 2_000_000_000, "bytes_in": 120, "bytes_out": 900,
        "chunk_count": 3,
    }  # fmt: skip
    event.update(overrides)
    return event


def sse(*docs: object) -> bytes:
    return b"".join(b"data: " + orjson.dumps(d) + b"\n\n" for d in docs) + b"data: [DONE]\n\n"


def openai_chunks() -> list[ChunkIn]:
    def delta(content: str | None, finish: str | None = None) -> dict[str, Any]:
        d = {} if content is None else {"content": content}
        return {"id": "chatcmpl-1", "model": "gpt-4o-2024-08-06",
                "choices": [{"index": 0, "delta": d, "finish_reason": finish}]}  # fmt: skip

    usage = {"id": "chatcmpl-1", "model": "gpt-4o-2024-08-06", "choices": [],
             "usage": {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13,
                       "prompt_tokens_details": {"cached_tokens": 4},
                       "completion_tokens_details": {"reasoning_tokens": 1}}}  # fmt: skip
    return [
        ChunkIn(1, 40_000_000, sse(delta("Hel"))[: -len(b"data: [DONE]\n\n")]),
        ChunkIn(2, 50_000_000, sse(delta("lo"))[: -len(b"data: [DONE]\n\n")]),
        ChunkIn(3, 90_000_000, sse(delta(None, "stop"), usage)),
    ]


def row(*args: Any) -> dict[str, Any]:
    values = exchange_row(*args)
    assert len(values) == len(EXCHANGE_COLUMNS)
    return dict(zip(EXCHANGE_COLUMNS, values, strict=True))


def test_raw_request_columns_are_the_event_fields_with_derived_ones_converted() -> None:
    events = [request(), request(request_id="r2", received_at_us=1_700_000_000_000_000)]
    columns = dict(
        zip(REQUEST_COLUMNS, raw_columns(REQUEST_COLUMNS, events, [0, 1], [5, 6]), strict=True)
    )
    assert columns["received_at"] == [
        RECEIVED, dt.datetime.fromtimestamp(1_700_000_000, tz=dt.UTC)
    ]  # fmt: skip
    assert columns["headers"][0] == [
        ("content-type", "application/json"), ("authorization", "fp:abc")
    ]  # fmt: skip
    assert columns["kafka_partition"] == [0, 1]
    assert columns["kafka_offset"] == [5, 6]
    derived = {"received_at", "headers", "kafka_partition", "kafka_offset"}
    for name in set(REQUEST_COLUMNS) - derived:
        assert columns[name] == [e[name] for e in events], name


def test_raw_chunk_and_completed_columns() -> None:
    chunk = {"request_id": RID, "seq": 1, "offset_ns": 5, "data": b"x", "size": 1,
             "truncated": False, "delivered": True}  # fmt: skip
    chunks = dict(zip(CHUNK_COLUMNS, raw_columns(CHUNK_COLUMNS, [chunk], [2], [9]), strict=True))
    assert chunks == {**{k: [v] for k, v in chunk.items()}, "kafka_partition": [2],
                      "kafka_offset": [9]}  # fmt: skip
    done = completed()
    columns = dict(
        zip(COMPLETED_COLUMNS, raw_columns(COMPLETED_COLUMNS, [done], [0], [7]), strict=True)
    )
    assert columns["completed_at"] == [COMPLETED]
    assert columns["response_headers"] == [
        [("x-request-id", "req_up_1"), ("content-type", "text/event-stream")]
    ]
    for name in set(COMPLETED_COLUMNS) - {"completed_at", "response_headers", "kafka_partition",
                                           "kafka_offset"}:  # fmt: skip
        assert columns[name] == [done[name]], name


def test_raw_columns_of_no_events_are_empty_lists() -> None:
    assert raw_columns(CHUNK_COLUMNS, [], [], []) == [[] for _ in CHUNK_COLUMNS]


def test_openai_stream_exchange_row_every_column() -> None:
    # sse_events counts the four JSON events and [DONE]; gaps are 10 and 40 ms.
    req = request()
    got = row(req, openai_chunks(), completed())
    assert got == {
        "request_id": RID, "received_at": RECEIVED, "completed_at": COMPLETED, "method": "POST",
        "path": "/v1/chat/completions", "endpoint": "/v1/chat/completions", "dialect": "openai",
        "provider": "openai", "upstream_url": "http://127.0.0.1:9/v1/chat/completions",
        "model_requested": "gpt-4o", "model_sent": "gpt-4o",
        "model_responded": "gpt-4o-2024-08-06", "stream": True, "peer_ip": "127.0.0.1",
        "forwarded_for": "10.0.0.1", "client_ip": "10.0.0.1", "user_agent": "sdk/1",
        "client_key_fingerprint": "fp:abc",
        "request_headers": {"content-type": "application/json", "authorization": "fp:abc"},
        "response_headers": {"x-request-id": "req_up_1", "content-type": "text/event-stream"},
        "upstream_request_id": "req_up_1", "request_body": req["body"],
        "request_body_size": 120, "request_body_truncated": False, "request_json_valid": True,
        "request_utf8_valid": True,
        "request_params": '{"model":"gpt-4o","stream":true,"temperature":0.5}',
        "temperature": 0.5, "top_p": None, "max_tokens": None, "n": None, "response_format": "",
        "tools_count": 0, "tools": "", "system_prompt": "be brief",
        "messages": [("system", "be brief"), ("user", "hi")], "response_text": "Hello",
        "choices": ["Hello"], "tool_calls": "", "tool_calls_count": 0, "finish_reason": "stop",
        "response_id": "chatcmpl-1", "prompt_tokens": 11, "completion_tokens": 2,
        "total_tokens": 13, "cached_tokens": 4, "reasoning_tokens": 1, "usage_estimated": False,
        "status": 200, "upstream_status": 200, "outcome": "ok", "error_type": "",
        "error_message": "", "ttfb_ms": 30.0, "ttft_ms": 40.0, "duration_ms": 2000.0,
        "bytes_in": 120, "bytes_out": 900, "chunk_count": 3, "chunks_missing": 0,
        "gap_max_ms": 40.0, "gap_p50_ms": 10.0, "gap_p99_ms": 40.0, "sse_events": 5,
        "sse_parse_errors": 0, "done_marker": True,
    }  # fmt: skip


def test_anthropic_json_response_with_a_tool_call() -> None:
    body = {"model": "claude-sonnet-4", "max_tokens": 100, "system": "use tools",
            "tools": [{"name": "weather", "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": "weather?"}]}  # fmt: skip
    answer = {
        "id": "msg_1", "type": "message", "model": "claude-sonnet-4-20250514",
        "content": [{"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "tu_1", "name": "weather",
                     "input": {"city": "Oslo"}}],
        "stop_reason": "tool_use", "usage": {"input_tokens": 20, "output_tokens": 8},
    }  # fmt: skip
    req = request(body=orjson.dumps(body), dialect="anthropic", provider="anthropic",
                  endpoint="/v1/messages", path="/v1/messages", stream=False,
                  model_requested="claude-sonnet-4")  # fmt: skip
    got = row(req, [ChunkIn(1, 500_000_000, orjson.dumps(answer))], completed(
        chunk_count=1, response_headers=[{"name": "request-id", "value": "req_a"}]))  # fmt: skip
    assert got["system_prompt"] == "use tools"
    assert got["messages"] == [("user", "weather?")]
    assert got["tools_count"] == 1
    assert orjson.loads(got["tools"]) == body["tools"]
    assert got["max_tokens"] == 100
    assert got["response_text"] == "Checking."
    assert orjson.loads(got["tool_calls"]) == [
        {"id": "tu_1", "name": "weather", "input": {"city": "Oslo"}}
    ]
    assert got["tool_calls_count"] == 1
    assert got["finish_reason"] == "tool_use"
    assert got["model_responded"] == "claude-sonnet-4-20250514"
    assert (got["prompt_tokens"], got["completion_tokens"]) == (20, 8)
    assert got["usage_estimated"] is False
    assert got["upstream_request_id"] == "req_a"
    assert got["stream"] is False
    assert (got["gap_max_ms"], got["gap_p50_ms"], got["gap_p99_ms"]) == (0.0, 0.0, 0.0)
    assert got["outcome"] == "ok"


def test_missing_usage_is_estimated_from_the_text() -> None:
    body = orjson.dumps({"messages": [{"role": "user", "content": "x" * 40}]})
    answer = orjson.dumps({"id": "c", "choices": [{"index": 0, "finish_reason": "stop",
                                                   "message": {"content": "y" * 20}}]})  # fmt: skip
    got = row(request(body=body, stream=False), [ChunkIn(1, 1, answer)], completed(chunk_count=1))
    assert got["usage_estimated"] is True
    expected = estimate(body, [answer], endpoint="/v1/chat/completions", dialect="openai",
                        stream=False)  # fmt: skip
    assert expected.prompt_tokens > 0
    assert expected.completion_tokens > 0
    assert (got["prompt_tokens"], got["completion_tokens"], got["total_tokens"]) == (
        expected.prompt_tokens, expected.completion_tokens, expected.total_tokens,
    )  # fmt: skip
    assert got["cached_tokens"] is None
    assert got["response_text"] == "y" * 20


def test_an_exchange_without_its_request_event_keeps_what_completed_says() -> None:
    got = row(None, [], completed(chunk_count=2, ttfb_ns=None, response_headers=[]))
    assert got["received_at"] == COMPLETED - dt.timedelta(seconds=2)
    assert got["completed_at"] == COMPLETED
    assert (got["method"], got["path"], got["endpoint"], got["dialect"]) == ("", "", "", "openai")
    assert got["request_body"] == b""
    assert got["request_json_valid"] is False
    assert got["request_headers"] == {}
    assert got["messages"] == []
    assert got["chunks_missing"] == 2
    assert got["ttfb_ms"] is None
    assert got["ttft_ms"] is None
    assert got["upstream_request_id"] == ""
    assert (got["prompt_tokens"], got["completion_tokens"], got["total_tokens"]) == (0, 0, 0)
    assert got["usage_estimated"] is True


def test_an_error_inside_an_ok_stream_is_not_ok() -> None:
    chunks = [ChunkIn(1, 10, b'data: {"error": {"type": "overloaded", "message": "busy"}}\n\n')]
    got = row(request(), chunks, completed(chunk_count=1))
    assert got["outcome"] == "upstream_error_in_stream"
    assert got["error_type"] == "stream_error"
    assert "busy" in got["error_message"]


def test_a_stream_without_its_end_is_incomplete() -> None:
    chunks = openai_chunks()[:2]
    got = row(request(), chunks, completed(chunk_count=3))
    assert got["outcome"] == "upstream_incomplete"
    assert got["done_marker"] is False
    assert got["chunks_missing"] == 1


def test_the_proxys_own_failure_is_kept() -> None:
    got = row(request(), [], completed(status=502, outcome="connect_error", upstream_status=0,
                                       error_type="ClientConnectorError", error_message="refused",
                                       chunk_count=0))  # fmt: skip
    assert (got["status"], got["upstream_status"]) == (502, 0)
    assert (got["outcome"], got["error_type"], got["error_message"]) == (
        "connect_error", "ClientConnectorError", "refused"
    )  # fmt: skip


@pytest.mark.parametrize(
    ("doc", "column", "expected"),
    [
        ({"max_tokens": -1}, "max_tokens", None),  # the column is unsigned
        ({"max_tokens": 0}, "max_tokens", 0),
        ({"n": 70_000}, "n", None),  # UInt16
        ({"n": 65_535}, "n", 65_535),
        ({"n": -1}, "n", None),
        ({"tools": [{}] * 70_000}, "tools_count", 65_535),
        ({"response_format": {"type": "json_object"}}, "response_format", "json_object"),
    ],
)
def test_values_outside_a_column_type_are_clamped_or_dropped(
    doc: dict[str, Any], column: str, expected: object
) -> None:
    got = row(request(body=orjson.dumps(doc), stream=False), [], completed(chunk_count=0))
    assert got[column] == expected


def test_invalid_json_request_body_is_kept_raw() -> None:
    raw = b'{"model": "gpt-4o", "messages": [\xff'
    got = row(request(body=raw, stream=False), [], completed(chunk_count=0))
    assert got["request_body"] == raw
    assert (got["request_json_valid"], got["request_utf8_valid"]) == (False, False)
    assert got["request_params"] == "{}"
    assert got["messages"] == []
    assert got["temperature"] is None


def test_inter_chunk_gaps_are_sorted_quantiles() -> None:
    data = [b": keep-alive\n\n"] * 5
    offsets = [0, 10_000_000, 12_000_000, 42_000_000, 43_000_000]
    chunks = [ChunkIn(i + 1, off, d) for i, (off, d) in enumerate(zip(offsets, data, strict=True))]
    got = row(request(), chunks, completed(chunk_count=5))
    # gaps: 10, 2, 30, 1 ms -> sorted 1, 2, 10, 30
    assert (got["gap_max_ms"], got["gap_p50_ms"], got["gap_p99_ms"]) == (30.0, 10.0, 30.0)
