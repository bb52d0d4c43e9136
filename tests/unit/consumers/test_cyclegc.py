from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from consumers.cyclegc import CycleCollectionPause


@pytest.fixture(autouse=True)
def _restore_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    yield
    if enabled:
        gc.enable()
    else:
        gc.disable()


def test_paused_for_the_batch_and_resumed_after() -> None:
    gc.enable()
    pause = CycleCollectionPause()
    with pause:
        assert not gc.isenabled()
    assert gc.isenabled()


def test_resumed_early_for_a_retry_and_not_paused_again_on_exit() -> None:
    gc.enable()
    pause = CycleCollectionPause()
    with pause:
        pause.resume()
        assert gc.isenabled()
        pause.resume()
    assert gc.isenabled()


def test_resumed_when_the_batch_raises() -> None:
    gc.enable()
    pause = CycleCollectionPause()
    with pytest.raises(RuntimeError), pause:
        raise RuntimeError("sink failed")
    assert gc.isenabled()


def test_a_collector_switched_off_elsewhere_stays_off() -> None:
    gc.disable()
    pause = CycleCollectionPause()
    with pause:
        pause.resume()
    assert not gc.isenabled()
