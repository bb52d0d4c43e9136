from __future__ import annotations

import asyncio

import pytest
import uvloop

from proxy.errors import ConfigError
from proxy.eventloop import new_event_loop
from proxy.settings import ProxySettings


def test_uvloop_is_the_default_and_asyncio_can_be_chosen() -> None:
    default = ProxySettings.from_env({"OPENAI_BASE_URL": "http://127.0.0.1:1/v1"})
    assert default.event_loop == "uvloop"
    chosen = ProxySettings.from_env(
        {"OPENAI_BASE_URL": "http://127.0.0.1:1/v1", "LOGORHYTHMS_EVENT_LOOP": "asyncio"}
    )
    assert chosen.event_loop == "asyncio"


def test_an_unknown_event_loop_is_refused_with_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"'trio'.*uvloop, asyncio"):
        ProxySettings.from_env(
            {"OPENAI_BASE_URL": "http://127.0.0.1:1/v1", "LOGORHYTHMS_EVENT_LOOP": "trio"}
        )


@pytest.mark.parametrize(
    ("name", "kind"), [("uvloop", uvloop.Loop), ("asyncio", asyncio.BaseEventLoop)]
)
def test_new_event_loop_runs_coroutines_on_the_named_loop(name: str, kind: type) -> None:
    loop = new_event_loop(name)
    try:
        assert isinstance(loop, kind)
        assert (name == "uvloop") == isinstance(loop, uvloop.Loop)

        async def answer() -> int:
            await asyncio.sleep(0)
            return 42

        assert loop.run_until_complete(answer()) == 42
    finally:
        loop.close()
