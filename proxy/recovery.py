"""Ending the exchanges a killed proxy left open: a ``proxy_died`` completed event for each.

A proxy killed mid-exchange (SIGKILL, OOM, power) leaves request and chunk events without a
completed event. At the next start the journal's leftover segments are read (acknowledged records
too: an exchange's request may have reached Kafka long before the kill), and every exchange seen
there without a completed event gets one, outcome ``proxy_died``, appended to the journal behind
the leftovers, so it reaches Kafka after them. Its ``chunk_count`` is the last chunk sequence
number the journal holds, so the stored chunks are exactly 1..chunk_count; its duration runs to
the last event captured. Pure: records in, events out.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from proxy import capture
from proxy.journal_record import JournalRecord
from schemas import EVENT_HEADER, SCHEMA_HEADER, Codec, CodecError, EventType

log = logging.getLogger(__name__)

OUTCOME = "proxy_died"


@dataclass(slots=True)
class _Open:
    received_at_us: int | None = None
    chunks: int = 0
    last_offset_ns: int = 0
    ttfb_ns: int | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    headers: list[tuple[str, bytes]] | None = None


def died_completions(
    records: Iterable[JournalRecord], codec: Codec
) -> list[tuple[bytes, bytes, list[tuple[str, bytes]] | None]]:
    """Completed events (key, value, headers) for the exchanges ``records`` leave open."""
    open_exchanges: dict[bytes, _Open] = {}
    ended: set[bytes] = set()
    for record in records:
        if record.key in ended:
            continue
        try:
            event_type, fields = codec.decode(record.value)
        except CodecError:
            continue  # not ours to judge: the loader dead-letters it
        if event_type is EventType.COMPLETED:
            ended.add(record.key)
            open_exchanges.pop(record.key, None)
            continue
        state = open_exchanges.setdefault(record.key, _Open())
        if event_type is EventType.REQUEST:
            received = fields["received_at_us"]  # decoded as an aware datetime
            state.received_at_us = (
                received if isinstance(received, int) else int(received.timestamp() * 1_000_000)
            )
            state.bytes_in = fields.get("body_size") or len(fields.get("body") or b"")
            state.headers = record.headers
        else:
            state.chunks = max(state.chunks, fields["seq"])
            state.last_offset_ns = max(state.last_offset_ns, fields["offset_ns"])
            if state.ttfb_ns is None:
                state.ttfb_ns = fields["offset_ns"] if fields["seq"] == 1 else None
            if fields.get("delivered"):
                state.bytes_out += fields["size"]
    out: list[tuple[bytes, bytes, list[tuple[str, bytes]] | None]] = []
    for key, state in open_exchanges.items():
        request_id = key.decode()
        completed = capture.completed_event(
            request_id=request_id,
            status=0,
            outcome=OUTCOME,
            error_type=OUTCOME,
            error_message="the proxy process died before the exchange ended",
            upstream_status=0,
            response_headers=(),
            ttfb_ns=state.ttfb_ns,
            duration_ns=state.last_offset_ns,
            bytes_in=state.bytes_in,
            bytes_out=state.bytes_out,
            chunk_count=state.chunks,
        )
        if state.received_at_us is not None:
            completed["completed_at_us"] = state.received_at_us + state.last_offset_ns // 1000
        # The request's trace context continues; the event and schema headers are this event's.
        trace = [h for h in state.headers or () if h[0] not in (EVENT_HEADER, SCHEMA_HEADER)]
        headers = codec.event_headers(EventType.COMPLETED) + trace
        out.append((key, codec.encode(EventType.COMPLETED, completed), headers))
    if out:
        log.warning("%d exchange(s) were open when the proxy died: ended as %s", len(out), OUTCOME)
    return out
