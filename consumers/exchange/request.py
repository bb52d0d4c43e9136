"""What the client asked for, read from the raw request body of any dialect."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(slots=True)
class ParsedRequest:
    json_valid: bool = False
    utf8_valid: bool = True
    system_prompt: str = ""
    messages: list[tuple[str, str]] = field(default_factory=list)
    tools_json: str = ""
    tools_count: int = 0
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    n: int | None = None
    response_format: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


_CONTENT_KEYS = {"messages", "input", "prompt", "system", "tools", "instructions"}


def parse_request(body: bytes, *, dialect: str) -> ParsedRequest:
    out = ParsedRequest()
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        out.utf8_valid = False
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return out
    if not isinstance(doc, dict):
        return out
    out.json_valid = True
    out.temperature = _float(doc.get("temperature"))
    out.top_p = _float(doc.get("top_p"))
    out.max_tokens = _int(
        doc.get("max_tokens", doc.get("max_completion_tokens", doc.get("max_output_tokens")))
    )
    out.n = _int(doc.get("n"))
    fmt = doc.get("response_format")
    if isinstance(fmt, dict):
        out.response_format = fmt.get("type") if isinstance(fmt.get("type"), str) else None
    elif isinstance(fmt, str):
        out.response_format = fmt
    tools = doc.get("tools")
    if isinstance(tools, list):
        out.tools_count = len(tools)
        out.tools_json = orjson.dumps(tools, option=orjson.OPT_SORT_KEYS).decode()
    out.params = {k: v for k, v in doc.items() if k not in _CONTENT_KEYS}
    system: list[str] = []
    if dialect == "anthropic":
        system.append(_content_text(doc.get("system")))
    if isinstance(doc.get("instructions"), str):
        system.append(doc["instructions"])
    messages = doc.get("messages")
    if messages is None and isinstance(doc.get("input"), list):
        messages = doc["input"]
    for message in messages if isinstance(messages, list) else []:
        if not isinstance(message, dict):
            continue
        raw_role = message.get("role")
        role = raw_role if isinstance(raw_role, str) else ""
        text = _content_text(message.get("content"))
        if role in {"system", "developer"}:
            system.append(text)
        out.messages.append((role, text))
    for key in ("prompt", "input"):
        value = doc.get(key)
        if isinstance(value, str):
            out.messages.append(("user", value))
    out.system_prompt = "\n".join(s for s in system if s)
    return out


def _content_text(content: Any) -> str:
    """Text of a message content: a string, or the text parts of a list of content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    parts.append(text)
                elif part.get("type") in {"image_url", "image", "input_image"}:
                    parts.append("[image]")
            elif isinstance(part, str):
                parts.append(part)
        return "".join(parts)
    return ""


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
