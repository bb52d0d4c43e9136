"""Which asyncio event loop the proxy runs on: uvloop (libuv, written in Cython) where installed,
else the standard library's.

uvloop does the per-request loop work (callbacks, timers, socket reads and writes, transports) in C;
measured on the proxy it saves CPU per request (docs/decisions/0011-uvloop.md).
``LOGORHYTHMS_EVENT_LOOP=asyncio`` switches back, e.g. to rule the loop out when debugging.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging

log = logging.getLogger(__name__)

EVENT_LOOPS = ("uvloop", "asyncio")


def uvloop_available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def new_event_loop(name: str) -> asyncio.AbstractEventLoop:
    """A new loop of the named kind; ``uvloop`` falls back to asyncio (with a warning) where
    uvloop is not installed (it is not built for Windows)."""
    if name == "uvloop":
        if uvloop_available():
            import uvloop

            return uvloop.new_event_loop()
        log.warning("uvloop is not installed here; running on the standard asyncio loop")
    return asyncio.new_event_loop()
