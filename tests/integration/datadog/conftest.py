"""Real Datadog stand-ins: a ``ddapm-test-agent`` process, a UDP socket for DogStatsD, and the
forwarder itself as a subprocess (ddtrace configures itself from the environment at import and
patches globally, so it never runs inside the pytest process)."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from deploy.local.kafka import create_topic
from proxy import capture
from schemas import Codec, EventType

REPO = Path(__file__).resolve().parents[3]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def poll(what: str, probe: Callable[[], Any], *, timeout_s: float = 30.0) -> Any:
    """Call ``probe`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        await asyncio.sleep(0.1)
    pytest.fail(f"timed out after {timeout_s}s waiting for {what}")


@dataclass
class ApmTestAgent:
    url: str
    port: int
    process: subprocess.Popen[bytes] | None = None

    def requests(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/test/session/requests", timeout=5)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result

    def llmobs_spans(self) -> list[dict[str, Any]]:
        """Every LLM Observability span event the agent received (or extracted from traces)."""
        spans = []
        for request in self.requests():
            if "/api/v2/llmobs" not in request["url"]:
                continue
            for event in orjson.loads(base64.b64decode(request["body"])):
                spans.extend(event["spans"])
        return spans

    def traces(self) -> list[list[dict[str, Any]]]:
        response = httpx.get(f"{self.url}/test/session/traces", timeout=5)
        response.raise_for_status()
        result: list[list[dict[str, Any]]] = response.json()
        return result

    def start(self) -> None:
        binary = Path(sys.executable).parent / "ddapm-test-agent"
        self.process = subprocess.Popen(
            [
                str(binary),
                f"--port={self.port}",
                f"--otlp-http-port={free_port()}",
                f"--otlp-grpc-port={free_port()}",
                "--log-level=WARNING",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def up() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"ddapm-test-agent exited with {self.process.returncode}")
            try:
                return httpx.get(f"{self.url}/test/session/traces", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        deadline = time.monotonic() + 30
        while not up():
            if time.monotonic() > deadline:
                pytest.fail("ddapm-test-agent did not listen within 30s")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


@pytest.fixture(scope="session")
def test_agent() -> Iterator[ApmTestAgent]:
    port = free_port()
    agent = ApmTestAgent(f"http://127.0.0.1:{port}", port)
    agent.start()
    yield agent
    agent.stop()


@dataclass
class StatsdListener:
    sock: socket.socket
    lines: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        port: int = self.sock.getsockname()[1]
        return port

    def drain(self) -> list[str]:
        """Read every datagram waiting on the socket; returns all lines seen so far."""
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return self.lines
            self.lines.extend(line for line in data.decode().split("\n") if line)


@pytest.fixture
def statsd() -> Iterator[StatsdListener]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield StatsdListener(sock)
    sock.close()


@dataclass
class Forwarder:
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "deploy.cli", "forward-datadog"],
                env=self.env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        code = self.process.wait(30)
        self.process = None
        return code

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


ForwarderFactory = Callable[..., Forwarder]


@pytest.fixture
def forwarder_factory(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path, statsd: StatsdListener
) -> Iterator[ForwarderFactory]:
    started: list[Forwarder] = []

    def make(*, agent_port: int, **extra_env: str) -> Forwarder:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DD_", "LOGORHYTHMS_"))}
        env.update(
            KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
            LOGORHYTHMS_TOPIC=unique_topic,
            LOGORHYTHMS_DATADOG_GROUP=f"{unique_topic}-datadog",
            LOGORHYTHMS_BATCH_MAX_AGE_S="0.1",
            DD_TRACE_AGENT_URL=f"http://127.0.0.1:{agent_port}",
            DD_AGENT_HOST="127.0.0.1",
            DD_DOGSTATSD_PORT=str(statsd.port),
            DD_SERVICE="logorhythms-test",
            DD_ENV="test",
            **extra_env,
        )
        forwarder = Forwarder(env, tmp_path / f"forwarder-{len(started)}.log")
        started.append(forwarder)
        return forwarder

    yield make
    for forwarder in started:
        if forwarder.running:
            forwarder.stop(signal.SIGKILL)


@dataclass
class Exchange:
    """The events of one exchange, built with the proxy's own capture functions."""

    request_id: str
    model: str = "gpt-4o-mini"
    prompt: str = "name three primes"
    pieces: tuple[str, ...] = ("2", ", 3", " and 5")
    status: int = 200
    outcome: str = "ok"
    trace_headers: list[tuple[str, bytes]] = field(default_factory=list)
    received_at_us: int = field(default_factory=lambda: time.time_ns() // 1000)

    def request(self) -> tuple[EventType, dict[str, Any]]:
        body = orjson.dumps(
            {
                "model": self.model,
                "stream": True,
                "temperature": 0.2,
                "messages": [
                    {"role": "system", "content": "You are terse."},
                    {"role": "user", "content": self.prompt},
                ],
            }
        )
        return EventType.REQUEST, capture.request_event(capture.CapturedRequest(
            request_id=self.request_id, received_at_us=self.received_at_us, method="POST",
            path="/v1/chat/completions", query="", headers=[], peer_ip="127.0.0.1",
            forwarded_for=None, client_ip="127.0.0.1", client_key_fingerprint=None, body=body,
            max_body_in_event=900_000, model_requested=self.model, stream=True,
            endpoint="/v1/chat/completions", dialect="openai", provider="openai",
            upstream_url="http://upstream/v1/chat/completions", model_sent=self.model,
            proxy_instance="test",
        ))  # fmt: skip

    def chunks(self) -> list[tuple[EventType, dict[str, Any]]]:
        out = []
        for seq, piece in enumerate(self.pieces, start=1):
            delta = {"choices": [{"index": 0, "delta": {"content": piece}}], "model": self.model}
            out.append(
                (
                    EventType.CHUNK,
                    capture.chunk_event(
                        request_id=self.request_id, seq=seq, offset_ns=seq * 50_000_000,
                        data=b"data: " + orjson.dumps(delta) + b"\n\n", max_bytes=900_000,
                        delivered=True,
                    ),
                )
            )  # fmt: skip
        usage = {"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 3,
                                          "total_tokens": 14}}  # fmt: skip
        tail = b"data: " + orjson.dumps(usage) + b"\n\ndata: [DONE]\n\n"
        out.append(
            (
                EventType.CHUNK,
                capture.chunk_event(
                    request_id=self.request_id, seq=len(self.pieces) + 1,
                    offset_ns=(len(self.pieces) + 1) * 50_000_000, data=tail,
                    max_bytes=900_000, delivered=True,
                ),
            )
        )  # fmt: skip
        return out

    def completed(self) -> tuple[EventType, dict[str, Any]]:
        event = capture.completed_event(
            request_id=self.request_id, status=self.status, outcome=self.outcome,
            error_type=None if self.outcome == "ok" else f"http_{self.status}",
            error_message=None if self.outcome == "ok" else "upstream said no",
            upstream_status=self.status, response_headers={}, ttfb_ns=40_000_000,
            duration_ns=300_000_000, bytes_in=100, bytes_out=400,
            chunk_count=len(self.pieces) + 1,
        )  # fmt: skip
        event["completed_at_us"] = self.received_at_us + 300_000
        return EventType.COMPLETED, event

    def events(self) -> list[tuple[EventType, dict[str, Any]]]:
        return [self.request(), *self.chunks(), self.completed()]


class EventProducer:
    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        self._codec = Codec()

    async def __aenter__(self) -> EventProducer:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def send(
        self, request_id: str, events: list[tuple[EventType, dict[str, Any]]],
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:  # fmt: skip
        for event_type, record in events:
            await self._producer.send_and_wait(
                self.topic,
                self._codec.encode(event_type, record),
                key=request_id.encode(),
                headers=headers if event_type is not EventType.CHUNK else None,
            )


@pytest.fixture
async def events(kafka_bootstrap: str, unique_topic: str) -> Any:
    await create_topic(kafka_bootstrap, unique_topic, partitions=1)
    async with EventProducer(kafka_bootstrap, unique_topic) as producer:
        yield producer
