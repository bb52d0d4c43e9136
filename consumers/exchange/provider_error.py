"""The provider's own description of an error, read from one JSON document: an error body or an
in-stream error event, in the shapes OpenAI (chat, completions, Responses) and Anthropic send."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderError:
    """What a provider said went wrong; '' for what it did not say."""

    type: str = ""
    code: str = ""
    message: str = ""


def error_of(doc: dict[str, Any]) -> ProviderError | None:
    """The error a provider describes in one JSON document, or None if it describes none.

    Shapes: OpenAI's body and stream event ``{"error": {"message", "type", "code", "param"}}``;
    Anthropic's body and ``error`` event ``{"type": "error", "error": {"type", "message"}}``; the
    Responses API's ``error`` event ``{"type": "error", "code", "message", "param"}`` and its
    ``response.failed`` event, whose ``response.error`` is ``{"code", "message"}``.
    """
    nested = doc.get("error")
    if isinstance(nested, dict):
        found: dict[str, Any] = nested
    elif doc.get("type") == "error":
        found = doc
    elif doc.get("type") == "response.failed":
        response = doc.get("response")
        failed = response.get("error") if isinstance(response, dict) else None
        if not isinstance(failed, dict):
            return None
        found = failed
    else:
        return None
    return ProviderError(
        # A top-level error event's own type is just "error": no provider error type.
        type="" if found is doc else text_of(found.get("type")),
        code=text_of(found.get("code")),
        message=text_of(found.get("message")),
    )


def text_of(value: Any) -> str:
    # Providers send codes as strings, numbers or null; a column holds them as text.
    if value is None or isinstance(value, (dict, list)):
        return ""
    return value if isinstance(value, str) else str(value)
