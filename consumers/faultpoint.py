"""Documented fault-injection points for crash tests; off unless LOGORHYTHMS_FAULT_POINT is set.

``LOGORHYTHMS_FAULT_POINT=<name>``: when the loader reaches the point of that name it prints
``FAULT-POINT <name>`` to stderr and then waits forever, so a test can SIGKILL it exactly there
(the "window racer" of ClickHouse's chaos tests, made deterministic). Points:

- ``before_insert``: a batch is formed, nothing of it is in ClickHouse (K1 window W1);
- ``mid_insert``: the raw tables hold the batch, the exchanges table does not yet (W2);
- ``before_commit``: ClickHouse acknowledged the whole batch, Kafka offsets not committed (W3).
"""

from __future__ import annotations

import asyncio
import os
import sys

ENV = "LOGORHYTHMS_FAULT_POINT"
_ARMED = os.environ.get(ENV, "")


async def fault_point(name: str) -> None:
    if name != _ARMED:
        return
    sys.stderr.write(f"FAULT-POINT {name}\n")
    sys.stderr.flush()
    await asyncio.Event().wait()  # until killed
