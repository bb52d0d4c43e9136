"""A captured request and its answer as one conversation in OpenAI's message format.

Pure and I/O-free. The request body of any dialect becomes ``[{"role", "content", ...}]`` the way
OpenAI's chat API spells it: system first, tool calls as ``tool_calls`` of the assistant message,
tool results as ``tool`` messages; the answer the client received is the last assistant message.
Images are kept as their URL (or data URL) in ``images``, or, when ``keep_images`` is off,
replaced by the text ``<image>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

IMAGE_PLACEHOLDER = "<image>"
_IMAGE_TYPES = frozenset({"image_url", "image", "input_image"})


@dataclass(slots=True)
class Message:
    role: str
    content: str = ""
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[dict[str, Any]] = field(
        default_factory=list
    )  # id, type, function{name, arguments}
    images: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.name:
            out["name"] = self.name
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        if self.tool_calls:
            out["tool_calls"] = self.tool_calls
        return out


def messages_of(
    request_body: str | bytes,
    *,
    dialect: str,
    answer: str,
    answer_tool_calls: str,
    keep_images: bool,
) -> list[Message]:
    """The conversation: what the request held, then the answer (when it said anything)."""
    try:
        doc = orjson.loads(request_body)
    except orjson.JSONDecodeError:
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    out: list[Message] = []
    if dialect == "anthropic":
        system = doc.get("system")
        if system:
            out.append(Message("system", _text(system, keep_images, [])))
        for message in _list(doc.get("messages")):
            out += _anthropic_message(message, keep_images)
    else:
        if isinstance(doc.get("instructions"), str):
            out.append(Message("system", doc["instructions"]))
        items = doc.get("messages")
        if items is None and isinstance(doc.get("input"), list):
            items = doc["input"]
        for message in _list(items):
            out.append(_openai_message(message, keep_images))
        for key in ("prompt", "input"):
            if isinstance(doc.get(key), str):
                out.append(Message("user", doc[key]))
    calls = _answer_tool_calls(answer_tool_calls)
    if answer or calls:
        out.append(Message("assistant", answer, tool_calls=calls))
    return out


def _list(value: Any) -> list[dict[str, Any]]:
    return [m for m in value if isinstance(m, dict)] if isinstance(value, list) else []


def _text(content: Any, keep_images: bool, images: list[str]) -> str:
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for part in content if isinstance(content, list) else []:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, dict):
            if isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif part.get("type") in _IMAGE_TYPES:
                if keep_images:
                    images.append(_image_source(part))
                else:
                    parts.append(IMAGE_PLACEHOLDER)
            elif part.get("type") == "tool_result":
                parts.append(_text(part.get("content"), keep_images, images))
    return "".join(parts)


def _image_source(part: dict[str, Any]) -> str:
    url = part.get("image_url")
    if isinstance(url, dict):
        url = url.get("url")
    if isinstance(url, str):
        return url
    source = part.get("source")
    if isinstance(source, dict):
        if source.get("type") == "base64":
            return f"data:{source.get('media_type', '')};base64,{source.get('data', '')}"
        return str(source.get("url", ""))
    return ""


def _openai_message(message: dict[str, Any], keep_images: bool) -> Message:
    role = message.get("role") if isinstance(message.get("role"), str) else ""
    out = Message(str(role) or "user")
    out.content = _text(message.get("content"), keep_images, out.images)
    if isinstance(message.get("name"), str):
        out.name = message["name"]
    if isinstance(message.get("tool_call_id"), str):
        out.tool_call_id = message["tool_call_id"]
    out.tool_calls = [_openai_call(c) for c in _list(message.get("tool_calls"))]
    if message.get("type") == "function_call_output":  # Responses API input items
        out.role, out.tool_call_id = "tool", str(message.get("call_id", ""))
        out.content = str(message.get("output", ""))
    return out


def _anthropic_message(message: dict[str, Any], keep_images: bool) -> list[Message]:
    role = str(message.get("role", "user"))
    content = message.get("content")
    main = Message(role)
    results: list[Message] = []
    if isinstance(content, str):
        main.content = content
        return [main]
    texts: list[str] = []
    for block in _list(content):
        kind = block.get("type")
        if kind == "tool_use":
            main.tool_calls.append(_call(block.get("id"), block.get("name"), block.get("input")))
        elif kind == "tool_result":
            images: list[str] = []
            text = _text(block.get("content"), keep_images, images)
            results.append(
                Message("tool", text, tool_call_id=str(block.get("tool_use_id", "")), images=images)
            )
        else:
            texts.append(_text([block], keep_images, main.images))
    main.content = "".join(texts)
    return ([main] if main.content or main.tool_calls or main.images else []) + results


def _call(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    if not isinstance(arguments, str):
        arguments = orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS).decode()
    return {
        "id": str(call_id or ""),
        "type": "function",
        "function": {"name": str(name or ""), "arguments": arguments},
    }


def _openai_call(call: dict[str, Any]) -> dict[str, Any]:
    function: dict[str, Any] = call["function"] if isinstance(call.get("function"), dict) else {}
    return _call(call.get("id"), function.get("name"), function.get("arguments", ""))


def _answer_tool_calls(raw: str) -> list[dict[str, Any]]:
    """The answer's tool calls as the loader stored them (OpenAI, Anthropic or Responses shape)."""
    if not raw:
        return []
    try:
        calls = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return []
    out = []
    for call in _list(calls):
        if isinstance(call.get("function"), dict):
            out.append(_openai_call(call))
        else:
            out.append(
                _call(call.get("id"), call.get("name"), call.get("input", call.get("arguments")))
            )
    return out
