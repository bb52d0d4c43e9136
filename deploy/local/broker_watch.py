"""Keeps a local broker of `logorhythms up` (or one node of its cluster) alive, from a thread
of its own.

A restart takes seconds and a probe of a hung JVM blocks until its timeout; neither may hold
up the supervision of the Python services. The broker is restarted when its JVM exits, and
also when it stops answering: a Metadata probe every 5 s, killed and restarted after 30 s
without an answer (a paused or wedged JVM keeps its port open).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from deploy.local.kafka import KafkaBroker, KafkaSetupError, probe_metadata
from deploy.local.status import ServiceStatus
from deploy.local.supervision import (
    BACKOFF_FIRST_S,
    BACKOFF_MAX_S,
    STABLE_AFTER_S,
    how_it_ended,
    say,
)

__all__ = ["BROKER_HUNG_AFTER_S", "BROKER_PROBE_EVERY_S", "BrokerWatch"]

BROKER_PROBE_EVERY_S = 5.0
BROKER_HUNG_AFTER_S = 30.0  # no metadata answer for this long: the JVM is killed and restarted


@dataclass
class BrokerWatch:
    """Probes, restarts and reports one broker; :meth:`start` runs it, :meth:`join` ends it."""

    broker: KafkaBroker
    status: ServiceStatus
    changed: threading.Event
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="broker-watch", daemon=True)
        self.thread.start()

    @property
    def _what(self) -> str:
        """The broker as messages name it: which node, when it is one of a cluster."""
        name = self.status.name
        return "Kafka broker" if name == "kafka" else f"Kafka broker {name}"

    def _set(self, state: str, pid: int | None) -> None:
        if state != self.status.state:
            self.status.since = time.time()
        self.status.state, self.status.pid = state, pid
        self.changed.set()

    def _run(self) -> None:
        backoff = BACKOFF_FIRST_S
        answered = started = time.monotonic()
        while not self.stop.wait(BROKER_PROBE_EVERY_S):
            pid = self.broker.pid
            now = time.monotonic()
            if pid is not None:
                try:
                    if probe_metadata("127.0.0.1", self.broker.port, timeout_s=3.0):
                        answered = now
                        if now - started >= STABLE_AFTER_S:
                            backoff = BACKOFF_FIRST_S
                        continue
                except (OSError, ValueError):
                    pass
                if now - answered < BROKER_HUNG_AFTER_S or self.stop.is_set():
                    continue
                self.status.last_exit = "hung (killed)"
                say(
                    f"{self._what} (pid {pid}) has not answered for {now - answered:.0f}s; "
                    f"killing it and restarting (its log: {self.broker.log_file})"
                )
                self.broker.kill()
            else:
                returncode = self.broker.last_returncode
                ended = "an unknown status" if returncode is None else how_it_ended(returncode)
                self.status.last_exit = ended
                say(
                    f"{self._what} ended with {ended}; restarting in {backoff:.1f}s "
                    f"(restart #{self.status.restarts + 1}; its log: {self.broker.log_file})"
                )
            self._set("restarting", None)
            if self.stop.wait(backoff):
                return
            backoff = min(backoff * 2, BACKOFF_MAX_S)
            self.status.restarts += 1
            try:
                self.broker.start()
            except KafkaSetupError as exc:
                say(f"{self._what} did not come back: {str(exc).splitlines()[0]}")
                continue
            answered = started = time.monotonic()
            self._set("up", self.broker.pid)
            say(f"{self._what} is back (pid {self.broker.pid})")

    def join(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
