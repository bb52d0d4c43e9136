"""Proxy errors, and the client-facing error bodies in each API's own shape."""

from __future__ import annotations

import orjson


class ProxyError(Exception):
    """Root of the proxy's errors. ``retriable`` tells a caller whether trying again can help."""

    retriable = False


class ConfigError(ProxyError):
    """The configuration is invalid; the message says which setting to change."""


class PublishError(ProxyError):
    """An event could not be handed to Kafka."""

    retriable = True


class BodyTimeoutError(ProxyError):
    """The client stopped sending its request body: no first byte, or no next one, in time."""

    def __init__(self, message: str, *, waited_s: float) -> None:
        super().__init__(message)
        self.waited_s = waited_s


def openai_error_body(message: str, *, error_type: str, code: str | None = None) -> bytes:
    """An error body in OpenAI's shape, which every OpenAI SDK knows how to surface."""
    return orjson.dumps(
        {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    )


def anthropic_error_body(message: str, *, error_type: str) -> bytes:
    """An error body in Anthropic's shape."""
    return orjson.dumps({"type": "error", "error": {"type": error_type, "message": message}})


def error_body(dialect: str, message: str, *, error_type: str, code: str | None = None) -> bytes:
    if dialect == "anthropic":
        return anthropic_error_body(message, error_type=error_type)
    return openai_error_body(message, error_type=error_type, code=code)
