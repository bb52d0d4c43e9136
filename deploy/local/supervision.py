"""How `logorhythms up` paces restarts and tells the terminal about them.

One policy for the Python services and the broker alike (docs/decisions/0002): a restart after
0.5 s, doubling to 30 s, back to 0.5 s once the service has run for 30 s.
"""

from __future__ import annotations

import contextlib
import signal

__all__ = ["BACKOFF_FIRST_S", "BACKOFF_MAX_S", "STABLE_AFTER_S", "how_it_ended", "say"]

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 30.0  # up this long: the next exit restarts fast again


def say(message: str) -> None:
    """One line of the supervisor on the terminal."""
    print(f"[logorhythms up] {message}", flush=True)


def how_it_ended(returncode: int) -> str:
    """``exit code 3`` or ``signal SIGKILL`` for a process's return code."""
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-returncode).name}"
        return f"signal {-returncode}"
    return f"exit code {returncode}"
