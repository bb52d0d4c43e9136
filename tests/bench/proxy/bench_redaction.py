"""CPU of the request event's per-body work: credential redaction of the body and its SHA-256.

Thread CPU clock, best of 5 rounds, prose bodies as in ``bench_proxy``. ``--tree`` measures the
``proxy`` package of another source tree (e.g. an exported older commit) for a before/after:

    .venv/bin/python -m tests.bench.proxy.bench_redaction --tree /tmp/hotpath-base
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib
import os
import sys
import time
from collections.abc import Callable

from tests.bench.proxy.bench_proxy import request_body

HEADERS = [("Authorization", "Bearer sk-bench-client-key"), ("Content-Type", "application/json")]


def best_us(fn: Callable[[], object], calls: int) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.thread_time_ns()
        for _ in range(calls):
            fn()
        best = min(best, (time.thread_time_ns() - started) / calls)
    return best / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", help="measure proxy/ from this source tree instead")
    args = parser.parse_args()
    if args.tree:
        sys.path.insert(0, args.tree)
        for name in [m for m in sys.modules if m == "proxy" or m.startswith("proxy.")]:
            del sys.modules[name]
    try:  # proxy/redaction.py; a tree from before it has the same classes in proxy/capture.py
        capture = importlib.import_module("proxy.redaction")
    except ImportError:
        capture = importlib.import_module("proxy.capture")
    fingerprinter = capture.Fingerprinter(b"k" * 32)
    secrets = ("sk-bench-service",)
    redactor = fingerprinter.redactor(HEADERS, "", secrets)
    print(f"{capture.__file__}")
    build = best_us(lambda: fingerprinter.redactor(HEADERS, "", secrets), 2000)
    print(f"Fingerprinter.redactor {build:8.1f} us")
    print(f"Fingerprinter.headers  {best_us(lambda: fingerprinter.headers(HEADERS), 2000):8.1f} us")
    for size in (1024, 100 * 1024, 2 * 1024 * 1024):
        body = request_body(size)
        calls = max(3, 2_000_000 // size)
        redact = best_us(lambda body=body: redactor.body(body), calls)
        digest = best_us(lambda body=body: hashlib.sha256(body).digest(), calls)
        print(f"{size // 1024:5d} KB  Redactor.body {redact:9.1f} us   sha256 {digest:8.1f} us")
    # Bodies the value-shape scan has to look at closely: long tokens everywhere (a base64 image)
    # and a body holding keys to replace.
    image = (
        b'{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":'
        b'{"url":"data:image/png;base64,' + base64.b64encode(os.urandom(75_000)) + b'"}}]}]}'
    )
    keyed = request_body(1024).replace(b"The ", b"sk-proj-0123456789abcdefghijKLMN ", 3)
    for label, body in (("100 KB base64 image", image), ("1 KB with 3 keys", keyed)):
        calls = max(3, 2_000_000 // len(body))
        fresh = lambda body=body: fingerprinter.redactor(HEADERS, "", secrets).body(body)  # noqa: E731
        print(f"{label:>19}  Redactor.body {best_us(fresh, calls):9.1f} us")


if __name__ == "__main__":
    main()
