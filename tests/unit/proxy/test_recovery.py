"""Ending the exchanges a killed proxy left open, from its journal's records."""

from __future__ import annotations

from proxy import capture
from proxy.journal_record import JournalRecord
from proxy.recovery import OUTCOME, died_completions
from schemas import Codec, EventType

CODEC = Codec()


def _request(request_id: str) -> JournalRecord:
    event = capture.request_event(
        capture.CapturedRequest(
            request_id=request_id,
            received_at_us=1_700_000_000_000_000,
            method="POST",
            path="/v1/chat/completions",
            query="",
            headers=[],
            peer_ip="127.0.0.1",
            forwarded_for=None,
            client_ip="127.0.0.1",
            client_key_fingerprint=None,
            body=b'{"model":"m"}',
            max_body_in_event=1000,
            model_requested="m",
            stream=True,
            endpoint="/v1/chat/completions",
            dialect="openai",
            provider="openai",
            upstream_url="http://127.0.0.1/v1/chat/completions",
            model_sent="m",
            proxy_instance="test",
        )
    )
    value = CODEC.encode(EventType.REQUEST, event)
    return JournalRecord(key=request_id.encode(), value=value, headers=[("traceparent", b"00-x")])


def _chunk(request_id: str, seq: int) -> JournalRecord:
    event = capture.chunk_event(
        request_id=request_id, seq=seq, offset_ns=seq * 1000_000, data=b"data: x\n\n",
        max_bytes=1000, delivered=True,
    )  # fmt: skip
    return JournalRecord(
        key=request_id.encode(), value=CODEC.encode(EventType.CHUNK, event), headers=None
    )


def _completed(request_id: str) -> JournalRecord:
    event = capture.completed_event(
        request_id=request_id, status=200, outcome="ok", error_type=None, error_message=None,
        upstream_status=200, response_headers=(), ttfb_ns=1, duration_ns=2, bytes_in=1,
        bytes_out=1, chunk_count=0,
    )  # fmt: skip
    return JournalRecord(
        key=request_id.encode(), value=CODEC.encode(EventType.COMPLETED, event), headers=None
    )


def test_open_exchanges_get_one_proxy_died_completion_with_their_chunk_count() -> None:
    records = [
        _request("open"),
        _chunk("open", 1),
        _request("done"),
        _chunk("done", 1),
        _completed("done"),
        _chunk("open", 2),
        _chunk("tail-only", 7),  # its request reached Kafka before this journal's oldest record
        _chunk("tail-only", 8),
    ]
    ended = {key: CODEC.decode(value).record for key, value, _ in died_completions(records, CODEC)}
    assert set(ended) == {b"open", b"tail-only"}
    assert ended[b"open"]["outcome"] == OUTCOME
    assert ended[b"open"]["chunk_count"] == 2  # stored chunks are exactly 1..2
    assert ended[b"open"]["duration_ns"] == 2_000_000
    assert ended[b"open"]["ttfb_ns"] == 1_000_000
    assert ended[b"tail-only"]["chunk_count"] == 8
    assert ended[b"tail-only"]["ttfb_ns"] is None


def test_completion_keeps_the_request_trace_headers_and_nothing_ends_twice() -> None:
    [(key, _, headers)] = died_completions([_request("a")], CODEC)
    assert key == b"a"
    # Named as a completed event (not as the request it took the trace from), trace kept.
    assert headers == [*CODEC.event_headers(EventType.COMPLETED), ("traceparent", b"00-x")]
    assert died_completions([_request("a"), _completed("a")], CODEC) == []


def test_undecodable_records_are_left_to_the_loader() -> None:
    garbage = JournalRecord(key=b"g", value=b"not avro", headers=None)
    assert died_completions([garbage], CODEC) == []
