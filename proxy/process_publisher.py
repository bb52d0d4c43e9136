"""A publisher whose Kafka producer runs in a process of its own: ``LOGORHYTHMS_PRODUCER=process``.

The proxy's loop keeps only the journal: ``publish()`` appends, ``write_through()`` hands the
records to the kernel before a response head and its last byte (as inline) and rings the
producer process's doorbell, a pipe. The producer process (proxy/producer_process.py) owns
aiokafka and compression, sends the journal from the acknowledged position, and reports back
what Kafka acknowledged; this side acknowledges its journal with it (segments deleted, the
cursor saved by the inherited sync loop, ``/readyz`` degraded while the producer is down or
Kafka unreachable) and restarts the producer process whenever it exits. Every event is in the
kernel before the client sees its exchange, so a kill of either process loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from typing import Any

from proxy.journal import Position
from proxy.journal_record import Headers
from proxy.publisher import Publisher

log = logging.getLogger(__name__)

_RESTART_DELAY_S = 0.2
_STOP_WAIT_S = 5.0


class ProcessPublisher(Publisher):
    """A ``Publisher`` whose pump is a supervised producer process (see the module's docstring)."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self._doorbell = -1
        self._rung = Position(0, 0)
        self._process: asyncio.subprocess.Process | None = None
        self._stopping = False
        self._up = asyncio.Event()  # the producer process reached Kafka

    async def producer_ready(self) -> int:
        """Wait until the producer process reached Kafka; its process id (benchmarks, tests)."""
        while True:
            await self._up.wait()
            if self._process is not None:
                return self._process.pid
            self._up.clear()

    # -- state -----------------------------------------------------------------------------------

    @property
    def degraded(self) -> bool:
        return self._process is None or not self._connected or not self.journal.healthy

    @property
    def in_memory(self) -> int:
        return 0

    @property
    def idle(self) -> bool:
        return self.journal.acked >= self.journal.tail

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._open_journal()
        self.journal.flush()
        self._started = True
        self._stopping = False
        for name, coro in (("kafka-producer", self._supervise()), ("journal-sync", self._sync())):
            task = asyncio.create_task(coro, name=name)
            self._tasks.add(task)

    async def stop(self) -> None:
        """Let the producer process deliver within the stop budget; the rest stays journaled."""
        if not self._started:
            return
        await self._flush_within_stop_budget()
        self._stopping = True
        self._close_doorbell()  # the producer process sees the end of file and exits
        process = self._process
        if process is not None:
            try:
                async with asyncio.timeout(_STOP_WAIT_S):
                    await process.wait()
            except TimeoutError:
                process.kill()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self.journal.save_cursor()
        self.journal.close()
        self.drop_log.close()
        self._connected = False
        self._started = False

    async def flush(self) -> None:
        self._ring()
        while not self.idle:
            self._idle.clear()
            await self._idle.wait()

    # -- the hot path ----------------------------------------------------------------------------

    def publish(self, key: bytes, value: bytes, headers: Headers | None = None) -> None:
        """Hand one event over: into the journal only. Never blocks; never raises."""
        self.stats.published += 1
        if self._dropped_keys and key in self._dropped_keys:
            self._dropped(key, "exchange_incomplete")
            return
        self._append((key, value, headers))

    def write_through(self) -> None:
        started = time.perf_counter()
        self.journal.flush()
        self._ring()
        self._held_by_write_through(started)

    def _ring(self) -> None:
        """Wake the producer process when something new is in the kernel: one ``write``."""
        tail = self.journal.tail
        if tail == self._rung or self._doorbell < 0:
            return
        self._rung = tail
        with contextlib.suppress(BlockingIOError, BrokenPipeError):  # full: it is awake already
            os.write(self._doorbell, b"\x01")

    def _close_doorbell(self) -> None:
        if self._doorbell >= 0:
            with contextlib.suppress(OSError):
                os.close(self._doorbell)
            self._doorbell = -1

    # -- the producer process --------------------------------------------------------------------

    async def _supervise(self) -> None:
        while not self._stopping:
            try:
                await self._run_producer()
            except Exception:  # a bug here must not stop capture: start another process
                log.exception("producer process supervision failed; restarting it")
            self._connected = False
            if self._stopping:
                return
            self.stats.producer_restarts += 1
            log.warning("producer process exited; restarting it from the acknowledged position")
            await asyncio.sleep(_RESTART_DELAY_S)

    async def _run_producer(self) -> None:
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        acked = self.journal.acked
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "proxy.producer_process",
                f"--journal-dir={self.journal.directory}",
                f"--segment={acked.segment}",
                f"--offset={acked.offset}",
                f"--doorbell-fd={read_end}",
                f"--bootstrap={self._bootstrap}",
                f"--topic={self.topic}",
                f"--compression={self._compression or 'none'}",
                f"--linger-ms={round(self._linger_s * 1000)}",
                f"--timeout-s={self._kafka_timeout_s}",
                f"--client-id={self._client_id}",
                pass_fds=(read_end,),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
            )
        finally:
            os.close(read_end)
        self._doorbell = write_end
        self._rung = Position(0, 0)
        self._ring()
        process = self._process
        assert process.stdout is not None
        try:
            while line := await process.stdout.readline():
                started = time.perf_counter()
                self._on_report(line.decode().split())
                self.loop_monitor.record("producer_report", time.perf_counter() - started)
            await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            self._close_doorbell()
            self._process = None
            self._up.clear()

    def _on_report(self, words: list[str]) -> None:
        if words[:1] == ["ack"] and len(words) == 4:
            position, count = Position(int(words[1]), int(words[2])), int(words[3])
            if position > self.journal.acked:
                self.journal.ack(position, count)
            # Every event goes to Kafka from the journal: delivered and replayed alike, so the
            # accounting identity of docs/OPERATIONS.md holds as for the inline publisher.
            self.stats.delivered += count
            self.stats.replayed += count
            self._connected = True
            if self.idle:
                self._idle.set()
        elif words == ["up"]:
            self._connected = True
            self._up.set()
        elif words == ["down"]:
            if self._connected:
                # Kafka stopped keeping up: what the inline publisher counts as a spill (its
                # events wait in the journal until the producer process resends them).
                self.stats.spills += 1
                log.warning("Kafka is not keeping up: events wait in the journal")
            self._connected = False
            self._up.clear()
            self.stats.send_failures += 1
        elif words[:1] == ["drop"] and len(words) == 2:
            self._refused_as_too_large(bytes.fromhex(words[1]))

    async def _sync(self) -> None:
        """fsync what waits for Kafka longer than the interval, and save the cursor each second,
        both off the loop (as the inline publisher's sync loop)."""
        acked_saved: Position | None = None
        waiting_since: float | None = None
        while True:
            await asyncio.sleep(self._fsync_interval_s)
            acked = self.journal.acked
            if acked != acked_saved and time.monotonic() - self._cursor_saved > 1.0:
                acked_saved = acked
                await asyncio.to_thread(self.journal.save_cursor_at, acked)
                self._cursor_saved = time.monotonic()
            if self.idle:
                waiting_since = None
                continue
            if waiting_since is None:
                waiting_since = time.monotonic()
                continue
            if not self.journal.needs_sync:
                continue
            self.journal.flush()
            try:
                await asyncio.to_thread(self.journal.sync)
            except OSError as exc:
                log.error("journal fsync failed: %s", exc)
