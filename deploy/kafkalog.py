"""The Kafka client's log, summarised: each kind of line once per window, then a count.

With the broker down, aiokafka logs every failed connection and metadata refresh, about 70
ERROR lines a second per service, which buries everything else. Our own code says what the
state is (the publisher journals, the runner pauses and says so once); aiokafka's lines stay as
evidence, but each kind (logger, level and message with its numbers blanked) passes at most
once per ``window_s``; the next one after the window says how many were held back.

Installed by the `logorhythms` command for every service; it never imports aiokafka.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_S = 30.0
_MAX_KINDS = 256  # beyond this, kinds fall back to logger + level (still bounded)
_NUMBERS = re.compile(r"\d+")


@dataclass(slots=True)
class _Kind:
    opened: float
    held: int = 0


class KafkaClientLogSummary(logging.Handler):
    """Passes aiokafka's records on to the root logger's handlers, summarised."""

    def __init__(
        self, *, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self._window_s = window_s
        self._clock = clock
        self._kinds: dict[tuple[str, int, str], _Kind] = {}

    def _key(self, record: logging.LogRecord) -> tuple[str, int, str]:
        if len(self._kinds) >= _MAX_KINDS:
            return (record.name, record.levelno, "")
        return (record.name, record.levelno, _NUMBERS.sub("#", str(record.msg))[:160])

    def emit(self, record: logging.LogRecord) -> None:
        now = self._clock()
        key = self._key(record)
        kind = self._kinds.get(key)
        if kind is not None and now - kind.opened < self._window_s:
            kind.held += 1
            return
        if kind is not None and kind.held:
            record.msg = (
                f"{record.getMessage()} (and {kind.held} more like this in the last "
                f"{now - kind.opened:.0f}s)"
            )
            record.args = None
        self._kinds[key] = _Kind(now)
        logging.getLogger().handle(record)


def summarise_kafka_client_logs(*, window_s: float = WINDOW_S) -> None:
    """Route the ``aiokafka`` loggers through a :class:`KafkaClientLogSummary` (idempotent)."""
    logger = logging.getLogger("aiokafka")
    if any(isinstance(h, KafkaClientLogSummary) for h in logger.handlers):
        return
    logger.addHandler(KafkaClientLogSummary(window_s=window_s))
    logger.propagate = False
