"""The guard's pure parts: the 503 in each API's shape, and what refused requests leave in logs."""

from __future__ import annotations

import logging
import sys

import orjson
import pytest
from aiohttp.http_exceptions import BadHttpMessage

from proxy.guard import HTTP_SERVER_LOG, Guard
from proxy.routing import Endpoint
from proxy.settings import Provider, ProxySettings

SETTINGS = ProxySettings(providers=(Provider(name="openai", base_url="http://u/v1"),))


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
def test_overloaded_is_503_retry_after_in_the_dialects_shape(dialect: str) -> None:
    guard = Guard(SETTINGS)
    response = guard.overloaded(Endpoint("/v1/x", dialect))
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    assert isinstance(response.body, bytes)
    doc = orjson.loads(response.body)
    assert doc["error"]["type"] == "overloaded_error"
    assert (doc.get("type") == "error") is (dialect == "anthropic")
    assert guard.stats.rejected_overload == 1


def test_refused_requests_are_logged_without_their_bytes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    try:
        raise BadHttpMessage("Invalid header value char: b'X-Evil: attacker\\x00bytes'")
    except BadHttpMessage:
        exc_info = sys.exc_info()
    caplog.set_level(logging.DEBUG, logger=HTTP_SERVER_LOG.name)
    HTTP_SERVER_LOG.error("Error handling request from %s", "192.0.2.1", exc_info=exc_info)
    (record,) = caplog.records
    assert record.levelno == logging.DEBUG
    assert record.getMessage() == (
        "refused a malformed request from 192.0.2.1: BadHttpMessage (HTTP 400)"
    )
    assert "attacker" not in caplog.text


def test_refused_requests_are_silent_unless_debugging(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=HTTP_SERVER_LOG.name)
    try:
        raise BadHttpMessage("bad")
    except BadHttpMessage:
        HTTP_SERVER_LOG.exception("Error handling request from %s", "192.0.2.1")
    assert caplog.records == []
