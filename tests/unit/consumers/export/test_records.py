"""Records of a batch of leaves, per profile: copied columns, truncation, client fields, ids."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import orjson
import pyarrow as pa

from consumers.export.records import SCHEMA, Profile, build_batch

KEY = bytes(range(32))
IP_KEY = bytes(32)
_TIMING = pa.list_(
    pa.struct(
        [("1", pa.uint64()), ("2", pa.uint8()), ("3", pa.bool_()), ("4", pa.float64()),
         ("5", pa.list_(pa.float64()))]
    )
)  # fmt: skip


def _leaves() -> pa.RecordBatch:
    """Two leaves as the fold query returns them (its Arrow types)."""
    bodies = [
        {"messages": [{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": "Hi, mail me at bob@example.com"},
                      {"role": "assistant", "content": "Hello!"},
                      {"role": "user", "content": "Thanks"}]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "Look"},
                                                   {"type": "image_url",
                                                    "image_url": {"url": "https://x.test/a.png"}}]}]},
    ]  # fmt: skip
    columns = {
        "request_id": pa.array(["01a", "01b"]),
        "received_at": pa.array(
            [datetime(2026, 11, 1, 13, 45, 7, 123456, tzinfo=UTC)] * 2, pa.timestamp("us", "UTC")
        ),
        "endpoint": pa.array(["/v1/chat/completions"] * 2),
        "dialect": pa.array(["openai"] * 2),
        "provider": pa.array(["openai"] * 2),
        "model_requested": pa.array(["gpt-4o-mini", "gpt-4o"]),
        "model_responded": pa.array(["gpt-4o-mini-2024-07-18", ""]),
        "stream": pa.array([True, False]),
        "client_ip": pa.array(["10.0.0.1", "10.0.0.2"]),
        "user_agent": pa.array(["OpenAI/Python 1.50.0", "curl/8.5.0"]),
        "request_body": pa.array([orjson.dumps(b).decode() for b in bodies]),
        "response_text": pa.array(["You're welcome.", "A cat."]),
        "tool_calls": pa.array(["", ""]),
        "finish_reason": pa.array(["stop", "stop"]),
        "temperature": pa.array([0.5, None], pa.float64()),
        "top_p": pa.array([None, None], pa.float64()),
        "max_tokens": pa.array([100, None], pa.uint32()),
        **{
            name: pa.array([7, None], pa.uint32())
            for name in (
                "prompt_tokens",
                "completion_tokens",
                "total_tokens",
                "cached_tokens",
                "reasoning_tokens",
            )
        },
        "usage_estimated": pa.array([False, True]),
        "ttft_ms": pa.array([180.5, 90.0], pa.float64()),
        "chunk_offsets_ms": pa.array([[180.0, 220.0], []], pa.list_(pa.float64())),
        "turn_timing": pa.array(
            [[{"1": 3, "2": 1, "3": True, "4": 150.0, "5": [150.0]}], []], _TIMING
        ),
    }
    return pa.RecordBatch.from_pydict(columns)


def _records(profile: str) -> list[dict[str, object]]:
    built = build_batch(_leaves(), profile=Profile.named(profile), record_key=KEY, ip_key=IP_KEY)
    fields = [f for f in SCHEMA if f.name in built.columns]
    table = pa.Table.from_arrays([built.columns[f.name] for f in fields], schema=pa.schema(fields))
    return table.to_pylist()


def test_legal_records_keep_everything_as_captured() -> None:
    first, second = _records("legal")
    expected_id = hmac.new(KEY, b"01a", hashlib.sha256).hexdigest()[:32]
    assert first["conversation_id"] == expected_id
    assert first["timestamp"] == datetime(2026, 11, 1, 13, 45, 7, 123456, tzinfo=UTC)
    assert (first["model"], second["model"]) == ("gpt-4o-mini-2024-07-18", "gpt-4o")
    assert [m["role"] for m in first["messages"]] == [
        "system", "user", "assistant", "user", "assistant"
    ]  # fmt: skip
    assert first["messages"][1]["content"] == "Hi, mail me at bob@example.com"
    assert second["messages"][0]["images"] == ["https://x.test/a.png"]
    assert (first["turn"], second["turn"]) == (2, 1)
    assert first["usage"]["prompt_tokens"] == 7
    assert second["usage"]["estimated"] is True
    assert first["max_tokens"] == 100
    assert second["temperature"] is None
    assert [t["ttft_ms"] for t in first["turn_timing"]] == [150.0, 180.5]
    assert second["turn_timing"][0]["chunk_offsets_ms"] is None  # not streamed
    assert (first["client_ip"], first["request_id"]) == ("10.0.0.1", "01a")


def test_open_records_are_scrubbed_truncated_and_carry_no_client_fields() -> None:
    built = build_batch(_leaves(), profile=Profile.named("open"), record_key=KEY, ip_key=IP_KEY)
    first, second = _records("open")
    assert first["messages"][1]["content"] == "Hi, mail me at EMAIL_1"
    assert built.texts[0][1] == "Hi, mail me at EMAIL_1"
    assert built.first_user == ["Hi, mail me at EMAIL_1", "Look<image>"]
    assert built.scrubbed[0]["EMAIL"] == 1
    assert first["timestamp"] == datetime(2026, 11, 1, tzinfo=UTC)
    assert second["messages"][0]["images"] == []
    for field in ("hashed_ip", "user_agent_family", "client_ip", "user_agent", "request_id"):
        assert first[field] is None
        assert second[field] is None


def test_licensed_records_hash_the_ip_and_keep_the_client_family() -> None:
    first, second = _records("licensed")
    assert first["hashed_ip"] == hmac.new(IP_KEY, b"10.0.0.1", hashlib.sha256).hexdigest()[:32]
    assert (first["user_agent_family"], second["user_agent_family"]) == ("OpenAI/Python", "curl")
    assert first["timestamp"] == datetime(2026, 11, 1, 13, 45, 7, tzinfo=UTC)
    assert first["client_ip"] is None
