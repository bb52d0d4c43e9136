"""Measure the usage estimator (consumers/exchange/usage.py) against OpenAI's own tokenizer.

The sample is built from this repository's text — docs (prose and tables), Python source and the
Avro schemas (JSON) — cut into chat requests, plain completions and tool calls of varied sizes.
The reference count is what OpenAI bills for them: o200k_base tokens (GPT-4o, GPT-4.1, o-series,
GPT-5) of each part, plus the chat framing OpenAI documents (3 tokens a message, 3 to prime the
reply). Tool-call references are the tokens of name and arguments (OpenAI adds a few framing
tokens there that it does not document). Anthropic's tokenizer is not public: not measured.

    npm install --prefix /tmp/o200k js-tiktoken@1.0.21
    TIKTOKEN_PREFIX=/tmp/o200k .venv/bin/python -m tests.bench.consumers.bench_usage_estimate

Prints mean and p90 relative error per kind, for the estimator and for characters/4.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
from collections.abc import Sequence
from pathlib import Path

import orjson

from consumers.exchange.usage import (
    MESSAGE_OVERHEAD_TOKENS,
    REPLY_PRIMING_TOKENS,
    completion_tokens,
    prompt_tokens,
)

ROOT = Path(__file__).resolve().parents[3]
COUNTER = Path(__file__).with_name("o200k_count.mjs")
CHAT = "/v1/chat/completions"


def corpus() -> list[str]:
    files = [
        *sorted(ROOT.glob("docs/*.md")),
        *sorted(ROOT.glob("consumers/**/*.py")),
        *sorted(ROOT.glob("schemas/*.avsc")),
    ]
    return [p.read_text() for p in files]


def o200k(texts: Sequence[str]) -> list[int]:
    prefix = os.environ.get("TIKTOKEN_PREFIX")
    if not prefix:
        raise SystemExit("set TIKTOKEN_PREFIX to the npm prefix holding js-tiktoken (see above)")
    lines = "".join(json.dumps(t) + "\n" for t in texts)
    result = subprocess.run(
        ["node", str(COUNTER)],
        input=lines, capture_output=True, text=True, check=True,
        env={**os.environ, "TIKTOKEN_PREFIX": prefix},
    )  # fmt: skip
    return [int(n) for n in result.stdout.split()]


def pieces(texts: Sequence[str], count: int, rng: random.Random) -> list[str]:
    out = []
    for _ in range(count):
        text = rng.choice(texts)
        size = rng.choice((80, 300, 1200, 4000, 12000))
        start = rng.randrange(max(1, len(text) - size))
        out.append(text[start : start + size])
    return [p for p in out if p.strip()]


def main() -> None:
    rng = random.Random(15)
    texts = corpus()
    # Chat prompts: 1-6 messages of mixed prose, code and JSON.
    prompts: list[list[str]] = [pieces(texts, rng.randint(1, 6), rng) for _ in range(150)]
    answers = pieces(texts, 150, rng)
    calls = []
    for schema in ROOT.glob("schemas/*.avsc"):
        for field in orjson.loads(schema.read_bytes()).get("fields", []):
            calls.append(("record_" + field["name"], orjson.dumps(field).decode()))
    reference = o200k([t for p in prompts for t in p] + answers + [x for c in calls for x in c])
    at = 0
    errors: dict[str, list[tuple[float, float]]] = {"prompt": [], "text": [], "tool call": []}
    for parts in prompts:
        real = sum(reference[at : at + len(parts)])
        real += MESSAGE_OVERHEAD_TOKENS * len(parts) + REPLY_PRIMING_TOKENS
        at += len(parts)
        body = orjson.dumps({"messages": [{"role": "user", "content": p} for p in parts]})
        guess = prompt_tokens(body, dialect="openai")
        naive = round(sum(len(p) for p in parts) / 4)
        errors["prompt"].append(((guess - real) / real, (naive - real) / real))
    for answer in answers:
        real = reference[at]
        at += 1
        body = orjson.dumps({"choices": [{"index": 0, "message": {"content": answer}}]})
        guess = completion_tokens([body], endpoint=CHAT, dialect="openai", stream=False)
        errors["text"].append(((guess - real) / real, (round(len(answer) / 4) - real) / real))
    for name, arguments in calls:
        real = reference[at] + reference[at + 1]
        at += 2
        frames = [
            b"data: " + orjson.dumps({"choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "function": {"name": name if i == 0 else "",
                                          "arguments": arguments[i : i + 9]}}]}}]}) + b"\n\n"
            for i in range(0, len(arguments), 9)
        ]  # fmt: skip
        guess = completion_tokens(frames, endpoint=CHAT, dialect="openai", stream=True)
        naive = 0  # characters/4 of the text: a tool call has none
        errors["tool call"].append(((guess - real) / real, (naive - real) / real))
    print(f"{'kind':<10} {'n':>4} {'mean |err|':>11} {'p90 |err|':>10} {'bias':>7}   chars/4: "
          f"{'mean':>6} {'p90':>6}")  # fmt: skip
    for kind, pairs in errors.items():
        ours = sorted(abs(e) for e, _ in pairs)
        theirs = sorted(abs(n) for _, n in pairs)
        print(
            f"{kind:<10} {len(pairs):>4} {statistics.mean(ours):>11.1%} "
            f"{ours[int(0.9 * (len(ours) - 1))]:>10.1%} "
            f"{statistics.mean(e for e, _ in pairs):>+7.1%}            "
            f"{statistics.mean(theirs):>6.1%} {theirs[int(0.9 * (len(theirs) - 1))]:>6.1%}"
        )


if __name__ == "__main__":
    main()
