"""Token usage estimated from the exchange itself, for responses whose provider sent none.

Used only when the response carries no usage (a stream without ``include_usage``, a stream cut
short, an upstream that never counts). Pure: request body bytes and response chunks in, token
counts out. What is counted, and the measured error, are in docs/ANALYSTS.md ("Estimated usage").

Prompt: every part the model reads — system and developer text, every message's text, tool
calls the assistant made earlier (name and arguments), tool results, refusals and reasoning
text sent back, tool and function definitions and a JSON schema response format (as their
compact JSON), the Responses API's ``instructions`` and ``input`` items, the legacy ``prompt``,
embeddings ``input`` (token-id arrays count one token per id) — plus the chat framing OpenAI
documents (3 tokens a message, 3 to prime the reply). Images count by a fixed rule (below);
base64 files, documents and audio are not counted, their size says nothing reliable about
tokens.

Completion: every generated part — text, refusals, reasoning text and summaries, tool-call
names and arguments (streamed or whole), Anthropic tool inputs and thinking — of every choice.

Text is counted by a pre-tokenizer in the style of OpenAI's o200k (words, numbers, punctuation
runs, newlines) with a per-piece length rule calibrated on that tokenizer, not by characters/4,
which undercounts code and JSON and overcounts long English words.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import orjson

from consumers.exchange.sse import SseParser

# Images: OpenAI bills a "low" detail image 85 tokens and a high-detail one 85 + 170 a 512-px
# tile; 765 is a 1024x1024 image (4 tiles), the common size after its resize. Anthropic bills
# width x height / 750 of the image after resizing to at most ~1.15 megapixels: at most ~1,600.
IMAGE_TOKENS_OPENAI_LOW = 85
IMAGE_TOKENS_OPENAI = 765
IMAGE_TOKENS_ANTHROPIC = 1_600
MESSAGE_OVERHEAD_TOKENS = 3
REPLY_PRIMING_TOKENS = 3

_IMAGE_TYPES = frozenset({"image_url", "image", "input_image"})
# Base64 payloads whose token cost the bytes do not tell (files, documents, audio).
_OPAQUE_TYPES = frozenset({"file", "input_file", "document", "input_audio", "audio"})
# Members that name or label rather than carry text the model reads as content.
_NOT_TEXT = frozenset(
    {"type", "role", "id", "tool_call_id", "tool_use_id", "call_id", "cache_control",
     "signature", "status", "index", "detail", "media_type", "format", "encrypted_content"}
)  # fmt: skip


class Estimate(NamedTuple):
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


# --- text ---------------------------------------------------------------------------------------

# One match per pre-token: an optional leading space or punctuation mark glued to a word (as
# o200k does), a run of digits, a run of punctuation, a run of newlines, other whitespace.
_PIECE = re.compile(
    r"[^\r\n\w]?[^\W\d_]+|\d{1,3}| ?[^\s\w]+[\r\n]*|\s*[\r\n]+|\s+",
)


def text_tokens(text: str) -> int:
    """Tokens of one text, close to OpenAI's o200k tokenizer (measured error in ANALYSTS.md)."""
    if not text:
        return 0
    count = 0
    for match in _PIECE.finditer(text):
        piece = match.group()
        if piece.isascii():
            stripped = piece.lstrip()
            if stripped[:1].isalpha() or stripped[1:2].isalpha():
                # Words: common ones are one token, long or rare ones split every ~6 letters.
                count += 1 + (len(stripped) - 1) // 7
            else:
                # Punctuation runs merge in threes ("\":", "},"), whitespace runs are one token.
                count += max(1, (len(stripped) + 2) // 3) if stripped else 1
        else:
            # Non-Latin scripts: about one token for every 1.5 characters in o200k.
            wide = sum(1 for ch in piece if not ch.isascii())
            count += max(1, round(wide / 1.5)) + (len(piece) - wide) // 4
    return count


def _json_tokens(value: Any) -> int:
    return text_tokens(orjson.dumps(value, default=str).decode())


# --- the prompt ---------------------------------------------------------------------------------


def prompt_tokens(body: bytes, *, dialect: str) -> int:
    """Tokens of everything the model reads from this request body (0 if it is not JSON)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return 0
    if not isinstance(doc, dict):
        return 0
    image = IMAGE_TOKENS_ANTHROPIC if dialect == "anthropic" else IMAGE_TOKENS_OPENAI
    count = 0
    for key in ("system", "instructions", "prompt"):
        value = doc.get(key)
        if isinstance(value, list) and value and all(isinstance(i, int) for i in value):
            count += len(value)  # a legacy prompt given as token ids
        else:
            count += _content_tokens(value, image)
    for key in ("tools", "functions"):
        if isinstance(doc.get(key), list) and doc[key]:
            count += _json_tokens(doc[key])
    text_options = doc.get("text")
    fmt = doc.get("response_format") or (
        text_options.get("format") if isinstance(text_options, dict) else None
    )
    if isinstance(fmt, dict) and isinstance(fmt.get("json_schema") or fmt.get("schema"), dict):
        count += _json_tokens(fmt.get("json_schema") or fmt.get("schema"))
    messages = doc.get("messages")
    items = messages if isinstance(messages, list) else doc.get("input")
    if isinstance(items, list):
        if items and all(isinstance(i, int) for i in items):  # embeddings: token ids
            return count + len(items)
        for item in items:
            if isinstance(item, list) and all(isinstance(i, int) for i in item):
                count += len(item)
            elif isinstance(item, dict):
                count += _content_tokens(item, image)
                if messages is not None or item.get("role") is not None:
                    count += MESSAGE_OVERHEAD_TOKENS
            else:
                count += _content_tokens(item, image)
        if messages is not None:
            count += REPLY_PRIMING_TOKENS
    elif isinstance(items, str):
        count += text_tokens(items)
    return count


def _content_tokens(value: Any, image: int) -> int:
    """Tokens of one content value of any shape: a string, a list of parts, a message."""
    if isinstance(value, str):
        return text_tokens(value)
    if isinstance(value, list):
        return sum(_content_tokens(part, image) for part in value)
    if not isinstance(value, dict):
        return 0
    kind = value.get("type")
    if kind in _IMAGE_TYPES:
        detail = value.get("detail") or (value.get("image_url") or {}).get("detail")
        return IMAGE_TOKENS_OPENAI_LOW if detail == "low" else image
    if kind in _OPAQUE_TYPES:
        return 0
    count = 0
    for key, member in value.items():
        if key in _NOT_TEXT:
            continue
        if key == "input" and isinstance(member, dict):  # a tool_use block's arguments
            count += _json_tokens(member)
        else:
            count += _content_tokens(member, image)
    return count


# --- the completion -----------------------------------------------------------------------------


def completion_tokens(chunks: Sequence[bytes], *, endpoint: str, dialect: str, stream: bool) -> int:
    """Tokens of everything the model generated, read from the response bytes."""
    body = b"".join(chunks)
    if not body.strip():
        return 0
    parts: dict[tuple[Any, ...], list[str]] = {}
    if stream and body.lstrip().startswith((b"data:", b"event:", b":")):
        parser = SseParser()
        events = [*parser.feed(body), *parser.finish()]
        responses_done: dict[str, Any] | None = None
        for event in events:
            try:
                doc = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(doc, dict):
                continue
            if dialect == "anthropic":
                _anthropic_event(doc, parts)
            elif endpoint.endswith("/responses"):
                if doc.get("type") in {"response.completed", "response.incomplete"}:
                    responses_done = doc.get("response")
                _responses_event(doc, parts)
            else:
                _openai_choices(doc, "delta", parts)
        if not parts and isinstance(responses_done, dict):  # no deltas, only the summary
            _responses_output(responses_done, parts)
    else:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return 0
        if not isinstance(doc, dict):
            return 0
        if dialect == "anthropic":
            for index, block in enumerate(_list(doc.get("content"))):
                _anthropic_block(index, block, parts)
        elif endpoint.endswith("/responses"):
            _responses_output(doc, parts)
        else:
            _openai_choices(doc, "message", parts)
    return sum(text_tokens("".join(pieces)) for pieces in parts.values())


def _add(parts: dict[tuple[Any, ...], list[str]], key: tuple[Any, ...], value: Any) -> None:
    if isinstance(value, str) and value:
        parts.setdefault(key, []).append(value)


def _list(value: Any) -> Iterator[Any]:
    return iter(value) if isinstance(value, list) else iter(())


def _openai_choices(
    doc: dict[str, Any], member: str, parts: dict[tuple[Any, ...], list[str]]
) -> None:
    for choice in _list(doc.get("choices")):
        if not isinstance(choice, dict):
            continue
        index = choice.get("index", 0)
        _add(parts, (index, "text"), choice.get("text"))  # legacy completions
        message = choice.get(member)
        if not isinstance(message, dict):
            continue
        for kind in ("content", "refusal", "reasoning_content", "reasoning"):
            _add(parts, (index, kind), message.get(kind))
        calls = [*_list(message.get("tool_calls"))]
        if isinstance(message.get("function_call"), dict):
            calls.append({"index": -1, "function": message["function_call"]})
        for position, call in enumerate(calls):
            if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
                continue
            slot = call.get("index", position)
            _add(parts, (index, "tool", slot, "name"), call["function"].get("name"))
            _add(parts, (index, "tool", slot, "arguments"), call["function"].get("arguments"))


def _anthropic_block(index: Any, block: Any, parts: dict[tuple[Any, ...], list[str]]) -> None:
    if not isinstance(block, dict):
        return
    for kind in ("text", "thinking", "name"):
        _add(parts, (index, kind), block.get(kind))
    if isinstance(block.get("input"), dict) and block["input"]:
        _add(parts, (index, "input"), orjson.dumps(block["input"]).decode())


def _anthropic_event(doc: dict[str, Any], parts: dict[tuple[Any, ...], list[str]]) -> None:
    kind = doc.get("type")
    index = doc.get("index", 0)
    if kind == "content_block_start":
        _anthropic_block(index, doc.get("content_block"), parts)
    elif kind == "content_block_delta":
        delta = doc.get("delta")
        if isinstance(delta, dict):
            _add(parts, (index, "text"), delta.get("text"))
            _add(parts, (index, "thinking"), delta.get("thinking"))
            _add(parts, (index, "input"), delta.get("partial_json"))


def _responses_event(doc: dict[str, Any], parts: dict[tuple[Any, ...], list[str]]) -> None:
    kind = doc.get("type")
    if not isinstance(kind, str):
        return
    key = (doc.get("output_index", 0), doc.get("content_index", doc.get("summary_index", 0)))
    if kind.endswith(".delta") and isinstance(doc.get("delta"), str):
        # output_text, refusal, function_call_arguments, reasoning_text, reasoning_summary_text,
        # custom_tool_call_input: every streamed generated part arrives as one of these.
        _add(parts, (*key, kind), doc["delta"])
    elif kind == "response.output_item.added" and isinstance(doc.get("item"), dict):
        _add(parts, (doc.get("output_index", 0), "name"), doc["item"].get("name"))


def _responses_output(doc: dict[str, Any], parts: dict[tuple[Any, ...], list[str]]) -> None:
    for index, item in enumerate(_list(doc.get("output"))):
        if not isinstance(item, dict):
            continue
        for kind in ("name", "arguments", "input"):
            _add(parts, (index, kind), item.get(kind))
        for member in ("content", "summary"):
            for position, part in enumerate(_list(item.get(member))):
                if isinstance(part, dict):
                    _add(parts, (index, member, position, "text"), part.get("text"))
                    _add(parts, (index, member, position, "refusal"), part.get("refusal"))


def estimate(
    body: bytes, chunks: Sequence[bytes], *, endpoint: str, dialect: str, stream: bool
) -> Estimate:
    """Prompt and completion tokens of one exchange, for when the provider reported none."""
    return Estimate(
        prompt_tokens(body, dialect=dialect),
        completion_tokens(chunks, endpoint=endpoint, dialect=dialect, stream=stream),
    )
