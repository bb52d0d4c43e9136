"""How `up` names the way a service ended, and its restart pacing."""

from __future__ import annotations

import signal

from deploy.local.supervision import BACKOFF_FIRST_S, BACKOFF_MAX_S, STABLE_AFTER_S, how_it_ended


def test_exit_codes_and_signals_are_named() -> None:
    assert how_it_ended(0) == "exit code 0"
    assert how_it_ended(3) == "exit code 3"
    assert how_it_ended(-signal.SIGKILL) == "signal SIGKILL"
    assert how_it_ended(-200) == "signal 200"  # no such signal: the number


def test_backoff_starts_short_and_is_capped() -> None:
    assert 0 < BACKOFF_FIRST_S < BACKOFF_MAX_S <= STABLE_AFTER_S
