"""The proxy's only Kafka producer.

``publish()`` never waits: it appends to a bounded in-memory queue that one pump task hands to
aiokafka in arrival order (so the events of an exchange keep their order on its partition).
Awaiting ``producer.send()`` only means "appended to a batch"; delivery is confirmed later by the
returned future, and counted. Nothing on the response path ever waits for a broker.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]


@dataclass(slots=True)
class PublishStats:
    """The proxy's own accounting, exposed so served vs captured can be reconciled."""

    enqueued: int = 0
    delivered: int = 0
    failed: int = 0
    dropped: int = 0

    @property
    def in_flight(self) -> int:
        return self.enqueued - self.delivered - self.failed - self.dropped


class Publisher:
    def __init__(
        self,
        *,
        bootstrap_servers: str,
        topic: str,
        queue_max: int = 100_000,
        stop_timeout_s: float = 10.0,
        client_id: str = "logorhythms-proxy",
    ) -> None:
        self.topic = topic
        self.stats = PublishStats()
        self._bootstrap = bootstrap_servers
        self._client_id = client_id
        self._queue: collections.deque[tuple[bytes, bytes, Headers | None]] = collections.deque()
        self._queue_max = queue_max
        self._stop_timeout_s = stop_timeout_s
        self._wakeup = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._pump: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Future[object]] = set()
        self._connected = False
        self._stopping = False

    @property
    def connected(self) -> bool:
        return self._connected

    async def start(self) -> None:
        if self._pump is not None:
            return
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            compression_type="lz4",
            linger_ms=5,
            max_batch_size=512 * 1024,
            request_timeout_ms=30_000,
        )
        self._pump = asyncio.create_task(self._run(), name="kafka-publisher")

    def publish(self, key: bytes, value: bytes, headers: Headers | None = None) -> None:
        """Queue one event for Kafka. Never blocks; counts a drop if the queue is full."""
        self.stats.enqueued += 1
        if len(self._queue) >= self._queue_max:
            self.stats.dropped += 1
            log.error("publish queue full (%d events): dropping an event", self._queue_max)
            return
        self._queue.append((key, value, headers))
        self._wakeup.set()

    async def _connect(self) -> AIOKafkaProducer:
        assert self._producer is not None
        delay = 0.2
        while True:
            try:
                await self._producer.start()
            except KafkaError as exc:
                log.warning("Kafka not reachable at %s (%s); retrying", self._bootstrap, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            else:
                self._connected = True
                log.info("publishing to Kafka %s topic %s", self._bootstrap, self.topic)
                return self._producer

    async def _run(self) -> None:
        producer = await self._connect()
        while True:
            while not self._queue:
                if self._stopping:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            key, value, headers = self._queue.popleft()
            try:
                future = await producer.send(self.topic, value, key=key, headers=headers)
            except KafkaError as exc:
                self.stats.failed += 1
                log.error("could not hand an event to Kafka: %r", exc)
                continue
            self._pending.add(future)
            future.add_done_callback(self._on_delivery)

    def _on_delivery(self, future: asyncio.Future[object]) -> None:
        self._pending.discard(future)
        if future.cancelled() or future.exception() is not None:
            self.stats.failed += 1
            log.error("Kafka did not acknowledge an event: %r", future.exception())
        else:
            self.stats.delivered += 1

    async def flush(self) -> None:
        """Wait until every queued event is acknowledged (or failed)."""
        while self._queue or self._pending:
            if self._pending:
                await asyncio.wait(set(self._pending))
            else:
                await asyncio.sleep(0.005)

    async def stop(self) -> None:
        """Drain the queue and close the producer, within the stop budget."""
        if self._pump is None:
            return
        self._stopping = True
        self._wakeup.set()
        try:
            async with asyncio.timeout(self._stop_timeout_s):
                if self._connected:
                    await self.flush()
                    await self._pump
        except TimeoutError:
            log.error(
                "Kafka publisher did not drain within %.1fs: %d events not delivered",
                self._stop_timeout_s,
                len(self._queue) + len(self._pending),
            )
        finally:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None
            if self._producer is not None:
                # aiokafka's stop() can hang while the broker is away; bound it ourselves.
                with contextlib.suppress(TimeoutError, KafkaError):
                    async with asyncio.timeout(self._stop_timeout_s):
                        await self._producer.stop()
                self._producer = None
            self._connected = False
