"""How much credential redaction adds to building a request event (not run in CI).

Run: .venv/bin/pytest tests/bench/bench_redaction_speed.py -q -s (bench_*: CI never collects it)
"""

from __future__ import annotations

import time

import orjson
import pytest

from proxy.redaction import Fingerprinter


@pytest.mark.parametrize("messages", [5, 100, 10_000])
def test_redaction_cost_per_body(messages: int) -> None:
    redactor = Fingerprinter(b"k" * 32).redactor(
        [("Authorization", "Bearer sk-client-0123456789")], "", ["sk-service-0123456789"]
    )
    body = orjson.dumps(
        {
            "model": "gpt-4o-mini",
            "max_tokens": 100,
            "messages": [
                {"role": "user", "content": f'message {i} with some "quoted" text'}
                for i in range(messages)
            ],
        }
    )
    rounds = max(5, 200_000 // len(body))
    started = time.perf_counter()
    for _ in range(rounds):
        redactor.body(body)
    per_call_us = (time.perf_counter() - started) / rounds * 1e6
    print(f"{len(body):>9} bytes: {per_call_us:9.1f} µs per body")
    assert per_call_us < 20_000 * max(1, len(body) // 1_000_000)
