"""`logorhythms proxy --workers N`: N proxy processes on one port, and the parent that keeps them.

Each worker is a whole proxy (its own event loop, Kafka producer and journal directory, see
proxy/journal_ownership.py) listening on the same host:port with SO_REUSEPORT, so the kernel
spreads new connections across them and every core serves. The supervisor (the parent) serves
nothing:

- it refuses to start when the port is taken, before any worker runs;
- it starts the workers (multiprocessing "spawn": a fresh interpreter each, handed the settings
  built once here, so all share one fingerprint key even when it is the random default);
- a worker that dies unexpectedly is restarted with exponential backoff (0.5 s doubling to 30 s,
  back to 0.5 s once it has served for 30 s); a worker that fails at the first start stops the
  whole proxy instead, since restarting a misconfiguration only fills the logs;
- SIGTERM or SIGINT is forwarded once, as SIGTERM, to every worker, which drains and journals as
  a single proxy does; the supervisor exits 0 when every worker exited 0, else 1. Workers run in
  their own process group, so a terminal's Ctrl-C reaches only the supervisor: aiohttp aborts its
  graceful shutdown if a second signal arrives in the middle of it.
- a worker whose supervisor disappeared (SIGKILL) shuts itself down gracefully.

With ``workers = 1`` there is no supervisor: the proxy runs in this process, as it always did.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING

from proxy.settings import ProxySettings

if TYPE_CHECKING:  # the supervisor itself never loads aiohttp: it stays a small process
    from aiohttp import web

log = logging.getLogger(__name__)

_LOG_FORMAT = "%(asctime)s %(levelname)s [{who}] %(name)s %(message)s"
_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 30.0
_STABLE_AFTER_S = 30.0  # a worker up this long is healthy again: its next death restarts fast
_START_TIMEOUT_S = 120.0  # to reach "listening" at the first start (Kafka is not waited for)
_STOP_MARGIN_S = 5.0  # beyond the workers' own drain + flush budgets, before SIGKILL


class PortInUseError(Exception):
    """The proxy's address is taken; the message says by what and what to change."""

    retriable = False


def main(settings: ProxySettings) -> int:
    """Run the proxy as configured: in this process, or as ``settings.workers`` processes."""
    try:
        check_port_free(settings.host, settings.port)
    except PortInUseError as exc:
        logging.basicConfig(level=logging.INFO, format=_LOG_FORMAT.format(who="proxy"))
        log.error("%s", exc)
        return 2
    if settings.workers == 1:
        from proxy.app import run

        run(settings)
        return 0
    logging.basicConfig(level=logging.INFO, format=_LOG_FORMAT.format(who="supervisor"))
    return Supervisor(settings).run()


def check_port_free(host: str, port: int) -> None:
    """Bind once without SO_REUSEPORT: it fails if anything listens there, even our own workers
    (which would otherwise let a second proxy silently share the port)."""
    if port == 0:
        return
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise PortInUseError(f"cannot resolve the listen address {host!r}: {exc}") from exc
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp does
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise PortInUseError(f"cannot listen on {host}:{port}: {exc}") from exc
                raise PortInUseError(
                    f"port {port} on {host} is already in use (another proxy still running?): "
                    "stop it, or choose another port with LOGORHYTHMS_PORT or --port"
                ) from exc


@dataclass
class _Slot:
    """One worker position; its process changes across restarts."""

    index: int
    process: BaseProcess | None = None
    # Our end of a pipe to the worker: it says "listening" on it, and sees EOF if we die.
    channel: Connection | None = None
    listening_since: float | None = None
    restarts: int = 0  # in a row, for the backoff
    restart_at: float | None = None


class Supervisor:
    def __init__(self, settings: ProxySettings) -> None:
        self._settings = settings
        self._context = multiprocessing.get_context("spawn")
        self._slots = [_Slot(index) for index in range(settings.workers)]
        self._stopping = False
        self._stop_deadline = 0.0
        self._start_deadline: float | None = None  # until every worker listened once
        self._failed = False  # a worker could not start, or did not stop cleanly

    def run(self) -> int:
        settings = self._settings
        wakeup_read, wakeup_write = socket.socketpair()
        wakeup_write.setblocking(False)
        previous_fd = signal.set_wakeup_fd(wakeup_write.fileno())
        previous = {sig: signal.signal(sig, _note) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            log.info(
                "starting %d proxy workers on http://%s:%d (SO_REUSEPORT)",
                settings.workers,
                settings.host,
                settings.port,
            )
            self._start_deadline = time.monotonic() + _START_TIMEOUT_S
            for slot in self._slots:
                self._start(slot)
            while any(slot.process is not None for slot in self._slots) or not self._stopping:
                self._step(wakeup_read)
            return 1 if self._failed else 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_fd)
            wakeup_read.close()
            wakeup_write.close()

    def _step(self, wakeup: socket.socket) -> None:
        """Wait for the next thing to happen (a signal, a worker listening or exiting, a timer)
        and deal with it."""
        now = time.monotonic()
        deadlines = [s.restart_at for s in self._slots if s.restart_at is not None]
        if self._stopping:
            deadlines.append(self._stop_deadline)
        elif self._start_deadline is not None:
            deadlines.append(self._start_deadline)
        timeout = max(0.0, min(deadlines) - now) if deadlines else None
        watched: list[object] = [wakeup]
        for slot in self._slots:
            if slot.process is not None:
                watched.append(slot.process.sentinel)
            if slot.channel is not None and slot.listening_since is None:
                watched.append(slot.channel)
        events = wait(watched, timeout)  # type: ignore[arg-type]
        if wakeup in events:
            for signum in wakeup.recv(64):
                self._on_signal(signal.Signals(signum))
        for slot in self._slots:
            if slot.channel is not None and slot.channel in events:
                self._on_ready(slot)
            if slot.process is not None and slot.process.sentinel in events:
                self._on_exit(slot)
        now = time.monotonic()
        for slot in self._slots:
            if slot.restart_at is not None and now >= slot.restart_at:
                self._start(slot)
        if self._stopping and now >= self._stop_deadline:
            self._kill_leftovers()
        elif self._start_deadline is not None and now >= self._start_deadline:
            late = [s.index for s in self._slots if not s.listening_since]
            log.error("worker(s) %s did not listen within %.0fs; stopping", late, _START_TIMEOUT_S)
            self._failed = True
            self._stop()

    def _start(self, slot: _Slot) -> None:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=_worker_main,
            args=(self._settings, slot.index, theirs),
            name=f"logorhythms-proxy-worker-{slot.index}",
        )
        process.start()
        theirs.close()  # the child has its copy
        slot.process, slot.channel, slot.restart_at, slot.listening_since = (
            process,
            ours,
            None,
            None,
        )
        log.info("worker %d started (pid %d)", slot.index, process.pid)

    def _on_ready(self, slot: _Slot) -> None:
        assert slot.channel is not None
        try:
            slot.channel.recv()
        except EOFError:  # it died before listening: its sentinel reports it
            slot.channel.close()
            slot.channel = None
            return
        # The channel stays open (unwatched) for the worker's life: its EOF tells the worker
        # that we are gone.
        slot.listening_since = time.monotonic()
        if self._start_deadline is not None and all(s.listening_since for s in self._slots):
            self._start_deadline = None
            log.info("all %d workers are serving", len(self._slots))

    def _on_exit(self, slot: _Slot) -> None:
        assert slot.process is not None
        process, slot.process = slot.process, None
        process.join()
        code = process.exitcode if process.exitcode is not None else -1
        if slot.channel is not None:
            slot.channel.close()
            slot.channel = None
        how = _describe(code)
        listening_since, slot.listening_since = slot.listening_since, None
        if self._stopping:
            # Our SIGTERM can reach a worker still starting, before aiohttp handles it: it had
            # nothing to drain, so its default death is a clean stop.
            clean = code == 0 or (code == -signal.SIGTERM and listening_since is None)
            (log.info if clean else log.error)(
                "worker %d (pid %d) %s", slot.index, process.pid, how
            )
            self._failed |= not clean
            return
        if listening_since is None and self._start_deadline is not None:
            log.error(
                "worker %d (pid %d) %s before it could serve (see its log above); stopping the "
                "proxy instead of restarting it",
                slot.index,
                process.pid,
                how,
            )
            self._failed = True
            self._stop()
            return
        if listening_since is not None and time.monotonic() - listening_since >= _STABLE_AFTER_S:
            slot.restarts = 0
        delay = min(_BACKOFF_FIRST_S * 2**slot.restarts, _BACKOFF_MAX_S)
        slot.restarts += 1
        slot.restart_at = time.monotonic() + delay
        log.error(
            "worker %d (pid %d) %s unexpectedly; restarting it in %.1fs (restart %d in a row); "
            "the other workers keep serving the port meanwhile",
            slot.index,
            process.pid,
            how,
            delay,
            slot.restarts,
        )

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stopping:
            log.warning(
                "%s: already stopping (workers drain for up to %.0fs); SIGKILL aborts",
                sig.name,
                self._stop_deadline - time.monotonic(),
            )
            return
        log.info("%s: stopping every worker (drain in-flight exchanges, flush Kafka)", sig.name)
        self._stop()

    def _stop(self) -> None:
        settings = self._settings
        self._stopping = True
        self._start_deadline = None
        self._stop_deadline = (
            time.monotonic()
            + settings.shutdown_timeout_s
            + settings.publish_shutdown_timeout_s
            + _STOP_MARGIN_S
        )
        for slot in self._slots:
            slot.restart_at = None
            if slot.process is not None and slot.process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.process.pid, signal.SIGTERM)

    def _kill_leftovers(self) -> None:
        for slot in self._slots:
            if slot.process is not None and slot.process.pid is not None:
                log.error(
                    "worker %d (pid %d) did not stop within its budget; killing it (its "
                    "journal keeps what was fsynced)",
                    slot.index,
                    slot.process.pid,
                )
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.process.pid, signal.SIGKILL)
        self._stop_deadline = time.monotonic() + 10.0  # for the sentinels to report the kills


def _note(signum: int, frame: object) -> None:
    """Python-level handler so the wakeup fd receives the signal; the loop does the work."""


def _describe(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


# -- the worker process ---------------------------------------------------------------------------


def _worker_main(settings: ProxySettings, index: int, channel: Connection) -> None:
    # Out of the terminal's process group first: Ctrl-C goes to the supervisor, which forwards
    # it once (aiohttp would abandon its graceful shutdown on a second signal).
    os.setpgrp()
    logging.basicConfig(level=logging.INFO, format=_LOG_FORMAT.format(who=f"worker {index}"))
    from proxy.app import create_app, serve  # in the child only: the supervisor stays small

    app = create_app(settings, worker=index)
    app.cleanup_ctx.append(_supervisor_watch(channel))
    serve(app, reuse_port=True, on_listening=lambda: channel.send(True))
    channel.close()


def _supervisor_watch(channel: Connection) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context: if the supervisor dies (SIGKILL), the channel reads EOF and this worker
    stops gracefully, rather than keep the port and its journal with nobody to stop it."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()

        def supervisor_gone() -> None:
            loop.remove_reader(channel.fileno())
            log.error("the supervisor is gone: stopping this worker gracefully")
            os.kill(os.getpid(), signal.SIGTERM)  # aiohttp's own graceful shutdown

        loop.add_reader(channel.fileno(), supervisor_gone)
        yield
        loop.remove_reader(channel.fileno())

    return context
