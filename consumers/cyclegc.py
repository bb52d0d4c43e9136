"""How a consumer process uses Python's cyclic garbage collector.

A consumer allocates millions of short-lived objects (decoded events, ``Record``s, rows) every
few seconds and frees almost all of them by reference counting. With the default thresholds the
collector runs every 700 allocations and rescans what a batch still holds, for nothing; its cost
is measured in docs/PERFORMANCE.md.
"""

from __future__ import annotations

import gc


def collect_garbage_less() -> None:
    """Tune the collector once, at process start.

    What exists after start-up (modules, parsed schemas) is frozen out of every collection, and
    the youngest generation is collected every 10,000 allocations instead of 700. Only reference
    cycles wait a little longer.
    """
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


class CycleCollectionPause:
    """Pauses the cyclic garbage collector while one batch is delivered.

    A batch allocates a few tracked objects per record (``Record``, ``Decoded``, the sink's own)
    that all live until the batch is written: every young-generation collection during the batch
    scans them again and frees nothing. Paused, they are freed by reference counting when the
    batch is done, never scanned. The collector is resumed as soon as a batch waits for a retry,
    so a long outage never runs without it.
    """

    def __init__(self) -> None:
        self._paused = False

    def __enter__(self) -> None:
        self._paused = gc.isenabled()  # never resume what someone else switched off
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        self.resume()

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            gc.enable()
