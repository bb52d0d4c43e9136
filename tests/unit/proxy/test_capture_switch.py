"""LOGORHYTHMS_CAPTURE turns the capture off for benchmarks; anything unclear is an error."""

from __future__ import annotations

import pytest

from proxy.errors import ConfigError
from proxy.settings import ProxySettings


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, True), ("", True), ("on", True), ("ON", True), ("1", True), ("off", False),
     ("false", False), ("0", False)],
)  # fmt: skip
def test_capture_switch_reads_on_and_off(raw: str | None, expected: bool) -> None:
    env = {"OPENAI_BASE_URL": "http://127.0.0.1:1/v1"}
    if raw is not None:
        env["LOGORHYTHMS_CAPTURE"] = raw
    assert ProxySettings.from_env(env).capture is expected


def test_an_unclear_capture_switch_is_refused() -> None:
    env = {"OPENAI_BASE_URL": "http://127.0.0.1:1/v1", "LOGORHYTHMS_CAPTURE": "maybe"}
    with pytest.raises(ConfigError, match="LOGORHYTHMS_CAPTURE"):
        ProxySettings.from_env(env)
