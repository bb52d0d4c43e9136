"""CPU cost of the capture per event, measured in-process (no sockets): the steady numbers.

Each step the forwarder runs per event is timed alone with the thread's CPU clock over many
iterations; the best of several rounds is kept, because on a shared machine noise only ever
adds time. Run by hand:

    python -m tests.bench.proxy.bench_capture_cost [--iterations 20000] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro

from proxy import capture, redaction
from proxy.journal import Journal
from proxy.publisher import Publisher
from schemas import Codec, EventType

REQUEST_ID = "0190f1e2-7c3a-7000-8000-0123456789ab"
# What the OpenAI Python SDK sends, give or take.
CLIENT_HEADERS = [
    ("Host", "127.0.0.1:8080"),
    ("Accept-Encoding", "gzip, deflate"),
    ("Connection", "keep-alive"),
    ("Accept", "application/json"),
    ("Content-Type", "application/json"),
    ("User-Agent", "OpenAI/Python 1.55.0"),
    ("X-Stainless-Lang", "python"),
    ("X-Stainless-Package-Version", "1.55.0"),
    ("X-Stainless-OS", "Linux"),
    ("X-Stainless-Arch", "x64"),
    ("X-Stainless-Runtime", "CPython"),
    ("X-Stainless-Runtime-Version", "3.11.7"),
    ("Authorization", "Bearer sk-proj-0123456789abcdefghijklmnopqrstuvwxyz"),
    ("Content-Length", "1024"),
]
SSE_FRAME = (
    b'data: {"id":"chatcmpl-00000001","object":"chat.completion.chunk","created":1732540000,'
    b'"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"word "},'
    b'"finish_reason":null}]}\n\n'
)
RESPONSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "x-request-id": "req-00000001",
    "Date": "Wed, 25 Nov 2026 16:00:00 GMT",
    "Server": "Python/3.11 aiohttp/3.14.5",
    "x-logorhythms-request-id": REQUEST_ID,
}


PROSE = (
    "Summarise the following report in three bullet points, keeping numbers exact. "
    "Revenue grew 12.5% to $4.2M in Q3; churn fell from 3.1% to 2.4% (see table 2). "
)


def body_of(size: int) -> bytes:
    """A chat request of about ``size`` bytes whose text looks like text (not one repeated
    byte, which makes substring searches pathological)."""
    text = (PROSE * (size // len(PROSE) + 1))[: max(0, size - 80)]
    doc = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    return json.dumps(doc).encode()


def cpu_ns_per_call(fn: Callable[[], object], iterations: int, rounds: int = 5) -> float:
    """Best-of-rounds thread CPU nanoseconds per call."""
    best = float("inf")
    for _ in range(rounds):
        started = time.thread_time_ns()
        for _ in range(iterations):
            fn()
        best = min(best, (time.thread_time_ns() - started) / iterations)
    return best


class Steps:
    """The per-event steps of proxy/exchange.py and proxy/relay.py, each callable alone."""

    def __init__(self, body_size: int) -> None:
        self.codec = Codec()
        self.fingerprinter = redaction.Fingerprinter(b"k" * 32)
        self.body = body_of(body_size)
        # Never started: publish() measures the in-memory path (no journal file is written).
        self.publisher = Publisher(
            bootstrap_servers="127.0.0.1:1",
            topic="bench",
            journal=Journal(Path(tempfile.gettempdir()) / "logorhythms-bench-journal"),
        )
        self.headers = [(k, v) for k, v in CLIENT_HEADERS]
        self.redactor = self.fingerprinter.redactor(self.headers, "", ("sk-bench-service",))
        self.chunk_parsed = self.codec._current[EventType.CHUNK][1]
        self.request_record = self.build_request()
        self.chunk_record = self.build_chunk()
        self.completed_record = self.build_completed()

    def build_request(self) -> dict[str, Any]:
        """Everything the proxy does per exchange for the request event (proxy/forward.py)."""
        headers, client_key = self.fingerprinter.headers(self.headers)
        redactor = self.fingerprinter.redactor(self.headers, "", ("sk-bench-service",))
        model, stream = capture.peek_json(self.body)
        captured = capture.CapturedRequest(
            request_id=REQUEST_ID,
            received_at_us=time.time_ns() // 1000,
            method="POST",
            path="/v1/chat/completions",
            query=self.fingerprinter.query(""),
            headers=headers,
            peer_ip="127.0.0.1",
            forwarded_for=None,
            client_ip="127.0.0.1",
            client_key_fingerprint=client_key,
            body=self.body,
            max_body_in_event=900 * 1024 - 4096,
            model_requested=model,
            stream=stream,
            endpoint="/v1/chat/completions",
            dialect="openai",
            provider="openai",
            upstream_url="http://127.0.0.1:9/v1/chat/completions",
            model_sent=model,
            proxy_instance="bench:1",
        )
        return capture.request_event(captured, redactor=redactor)

    def build_chunk(self) -> dict[str, Any]:
        return capture.chunk_event(
            request_id=REQUEST_ID,
            seq=17,
            offset_ns=time.monotonic_ns() % 100_000_000_000,
            data=SSE_FRAME,
            max_bytes=900 * 1024 - 4096,
            delivered=True,
            redactor=self.redactor,
        )

    def build_completed(self) -> dict[str, Any]:
        return capture.completed_event(
            request_id=REQUEST_ID,
            status=200,
            outcome="ok",
            error_type=None,
            error_message=None,
            upstream_status=200,
            response_headers=RESPONSE_HEADERS,
            ttfb_ns=1_234_567,
            duration_ns=9_876_543,
            bytes_in=len(self.body),
            bytes_out=4096,
            chunk_count=20,
        )

    def encode_chunk_fastavro(self) -> bytes:
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, self.chunk_parsed, self.chunk_record)
        return buffer.getvalue()

    def publish(self) -> None:
        self.publisher.publish(b"k", b"v")
        self.publisher._queue.clear()


def measure(iterations: int, body_sizes: tuple[int, ...]) -> dict[str, float]:
    results: dict[str, float] = {}
    steps = Steps(1024)
    codec = steps.codec
    results["chunk.build"] = cpu_ns_per_call(steps.build_chunk, iterations)
    results["chunk.encode.fastavro"] = cpu_ns_per_call(steps.encode_chunk_fastavro, iterations)
    results["chunk.encode"] = cpu_ns_per_call(
        lambda: codec.encode(EventType.CHUNK, steps.chunk_record), iterations
    )
    results["completed.build"] = cpu_ns_per_call(steps.build_completed, iterations)
    results["completed.encode"] = cpu_ns_per_call(
        lambda: codec.encode(EventType.COMPLETED, steps.completed_record), iterations
    )
    results["publish.enqueue"] = cpu_ns_per_call(steps.publish, iterations)
    for size in body_sizes:
        sized = steps if size == 1024 else Steps(size)
        n = max(50, iterations * 1024 // max(size, 1024))
        label = f"request[{size // 1024}KB]"
        results[f"{label}.build"] = cpu_ns_per_call(sized.build_request, n)
        results[f"{label}.encode"] = cpu_ns_per_call(
            lambda s=sized: s.codec.encode(EventType.REQUEST, s.request_record), n
        )
    return results


def summary(results: dict[str, float]) -> dict[str, float]:
    """Per-request (request + completed events) and per-chunk totals, without the broker send."""
    enqueue = results["publish.enqueue"]
    per_chunk = results["chunk.build"] + results["chunk.encode"] + enqueue
    per_request = (
        results["request[1KB].build"]
        + results["request[1KB].encode"]
        + results["completed.build"]
        + results["completed.encode"]
        + 2 * enqueue
    )
    return {"per_request_1KB": per_request, "per_chunk": per_chunk}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    asyncio.set_event_loop(asyncio.new_event_loop())  # Publisher's Event wants a loop to exist
    results = measure(args.iterations, (1024, 100 * 1024, 2 * 1024 * 1024))
    totals = summary(results)
    with open("/proc/loadavg", encoding="ascii") as loadavg:
        load = loadavg.read().split()[:3]
    print(f"load average {' '.join(load)}; CPU ns per call (best of 5 rounds)")
    for name, ns in {**results, **totals}.items():
        print(f"  {name:32s} {ns / 1000:9.2f} µs")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"load": load, "ns": results, "totals_ns": totals}, out, indent=2)


if __name__ == "__main__":
    main()
