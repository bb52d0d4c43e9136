"""aiokafka's log lines, summarised per kind and window."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from deploy.kafkalog import KafkaClientLogSummary


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def captured() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    root = logging.getLogger()
    keep = Keep()
    root.addHandler(keep)
    yield records
    root.removeHandler(keep)


def _record(name: str, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_a_storm_of_connection_errors_is_a_few_lines_with_counts(
    captured: list[logging.LogRecord],
) -> None:
    clock = _Clock()
    summary = KafkaClientLogSummary(window_s=30.0, clock=clock)
    # 70 lines a second for 5 s, of three kinds, with changing numbers in them.
    for i in range(350):
        clock.now = i / 70
        summary.handle(_record("aiokafka", "Unable connect to node with id %s: %s", 1, f"port {i}"))
        summary.handle(_record("aiokafka", f"Unable to update metadata from [{i % 3}]"))
        summary.handle(_record("aiokafka.conn", "Connection at 127.0.0.1:%d closed", 9092))
    assert len(captured) == 3
    clock.now = 31.0
    summary.handle(_record("aiokafka", "Unable connect to node with id %s: %s", 1, "again"))
    assert len(captured) == 4
    assert "and 349 more like this in the last 31s" in captured[-1].getMessage()


def test_a_new_kind_passes_at_once(captured: list[logging.LogRecord]) -> None:
    summary = KafkaClientLogSummary(window_s=30.0, clock=_Clock())
    summary.handle(_record("aiokafka", "Unable connect"))
    summary.handle(_record("aiokafka.consumer.group_coordinator", "Marking the coordinator dead"))
    assert [r.getMessage() for r in captured] == ["Unable connect", "Marking the coordinator dead"]
