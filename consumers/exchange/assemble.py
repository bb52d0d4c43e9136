"""Assemble what the model answered from the response bytes, for every dialect we proxy.

Input is an ordered chunk list (all the upstream sent, or only what reached the client: the
caller chooses); output is the text, tool calls, finish reason, token usage, the provider's own
error and the time of the first token. Malformed input never raises: it is counted in
``parse_errors`` and the rest of the response is still assembled.

``choices`` follows one rule in every dialect and mode: one text per choice the response
carried (a chat choice by its index; an Anthropic message or a Responses object is one choice),
'' for a choice without text (a tool call), [] when the response carried none (an error body,
a stream cut before its first choice).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from consumers.exchange.provider_error import ProviderError, error_of, text_of
from consumers.exchange.sse import SseParser, data_events


class ChunkIn(NamedTuple):
    """One response chunk (a NamedTuple: immutable and cheap, there is one per chunk)."""

    seq: int
    offset_ns: int
    data: bytes
    # False for the bytes the proxy read from the upstream but could not write to the client.
    delivered: bool = True


@dataclass(slots=True)
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None


@dataclass(slots=True)
class Assembled:
    text: str = ""
    choices: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    model: str | None = None
    response_id: str | None = None
    first_token_offset_ns: int | None = None
    sse_events: int = 0
    parse_errors: int = 0
    error_in_stream: str | None = None
    provider_error: ProviderError | None = None
    done_marker: bool = False
    # False for a stream that stopped without its dialect's end event ([DONE], message_stop,
    # response.completed): the upstream cut it short even if the connection closed cleanly.
    stream_ended: bool = True


def final_outcome(
    outcome: str, error_type: str | None, error_message: str | None, answer: Assembled
) -> tuple[str, str, str]:
    """The exchange's outcome as analysts and ops see it: the proxy's, except that a stream the
    proxy relayed to the end but whose upstream reported an error inside it is not "ok"."""
    if outcome == "ok" and answer.error_in_stream is not None:
        return "upstream_error_in_stream", "stream_error", answer.error_in_stream
    if outcome == "ok" and not answer.stream_ended:
        return (
            "upstream_incomplete",
            "no_end_of_stream",
            "the upstream closed the stream without its end-of-stream event",
        )
    if outcome == "upstream_http_error" and answer.provider_error is not None:
        # The provider's message says what went wrong; the reason phrase ("Not Found") does not.
        return outcome, error_type or "", answer.provider_error.message or error_message or ""
    return outcome, error_type or "", error_message or ""


def assemble(chunks: Sequence[ChunkIn], *, endpoint: str, dialect: str, stream: bool) -> Assembled:
    if not chunks:
        return Assembled()
    if not stream or not _looks_like_sse(chunks):
        return _assemble_body(b"".join(c.data for c in chunks), endpoint, dialect, chunks)
    parser = SseParser()
    state = _StreamState(endpoint=endpoint, dialect=dialect)
    state.out.stream_ended = False
    common = data_events([c.data for c in chunks], parser.max_event_bytes)
    if common is not None:
        on_event = state.on_event
        for data, index in common:
            on_event("message", data, chunks[index].offset_ns)
        return state.result()
    for position, chunk in enumerate(chunks):
        for event in parser.feed(chunk.data, position):
            state.on_event(event.event, event.data, chunks[event.index].offset_ns)
    for event in parser.finish(len(chunks) - 1):
        state.on_event(event.event, event.data, chunks[event.index].offset_ns)
    return state.result()


def _looks_like_sse(chunks: Sequence[ChunkIn]) -> bool:
    head = b""
    for chunk in chunks:
        head += chunk.data
        if len(head.lstrip()) >= 8:
            break
    return head.lstrip().startswith((b"data:", b"event:", b":", b"id:", b"retry:"))


# --- whole bodies -------------------------------------------------------------------------------


def _assemble_body(
    body: bytes, endpoint: str, dialect: str, chunks: Sequence[ChunkIn]
) -> Assembled:
    out = Assembled()
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        out.parse_errors = 1
        return out
    if not isinstance(doc, dict):
        return out
    out.model = _str(doc.get("model"))
    out.response_id = _str(doc.get("id"))
    out.provider_error = error_of(doc)
    if out.provider_error is not None:
        return out  # an error body generated no token: no time to first token, as in a stream
    out.first_token_offset_ns = chunks[0].offset_ns
    if dialect == "anthropic":
        _anthropic_message(doc, out)
    elif endpoint.endswith("/responses"):
        _responses_object(doc, out)
    else:
        choices = doc.get("choices") or []
        texts: list[str] = []
        for choice in choices if isinstance(choices, list) else []:
            message = choice.get("message") or {}
            texts.append(_str(message.get("content")) or _str(choice.get("text")) or "")
            for call in message.get("tool_calls") or []:
                out.tool_calls.append(call)
            out.finish_reason = out.finish_reason or _str(choice.get("finish_reason"))
        out.choices = texts
        out.text = texts[0] if texts else ""
        _openai_usage(doc.get("usage"), out.usage)
    return out


def _anthropic_message(doc: dict[str, Any], out: Assembled) -> None:
    texts: list[str] = []
    for block in doc.get("content") or []:
        if block.get("type") == "text":
            texts.append(block.get("text", ""))
        elif block.get("type") == "tool_use":
            out.tool_calls.append(
                {"id": block.get("id"), "name": block.get("name"), "input": block.get("input")}
            )
    out.text = "".join(texts)
    out.choices = [out.text]
    out.finish_reason = _str(doc.get("stop_reason"))
    # A count_tokens answer is {"input_tokens": n}: the prompt's size, with nothing generated.
    usage = doc.get(
        "usage", {"input_tokens": doc["input_tokens"]} if "input_tokens" in doc else None
    )
    _anthropic_usage(usage, out.usage)


def _responses_object(doc: dict[str, Any], out: Assembled) -> None:
    texts: list[str] = []
    for item in doc.get("output") or []:
        if item.get("type") == "message":
            texts.extend(
                part.get("text", "")
                for part in item.get("content") or []
                if part.get("type") == "output_text"
            )
        elif item.get("type") == "function_call":
            out.tool_calls.append(
                {
                    "id": item.get("call_id"),
                    "name": item.get("name"),
                    "arguments": item.get("arguments"),
                }
            )
    out.text = "".join(texts)
    out.choices = [out.text]
    out.finish_reason = _str(doc.get("status"))
    _responses_usage(doc.get("usage"), out.usage)


# --- streams ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _StreamState:
    endpoint: str
    dialect: str
    out: Assembled = field(default_factory=Assembled)
    texts: dict[int, list[str]] = field(default_factory=dict)
    tools: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    # The dialect's handler of one event's JSON, chosen once per stream rather than per event.
    _handle: Callable[[dict[str, Any], int], None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.dialect == "anthropic":
            self._handle = self._anthropic
        elif self.endpoint.endswith("/responses"):
            self._handle = self._responses
        else:
            self._handle = self._openai

    def _text(self, index: int, piece: str, offset_ns: int) -> None:
        if not piece:
            return
        self.texts.setdefault(index, []).append(piece)
        if self.out.first_token_offset_ns is None:
            self.out.first_token_offset_ns = offset_ns

    def _first_token(self, offset_ns: int) -> None:
        if self.out.first_token_offset_ns is None:
            self.out.first_token_offset_ns = offset_ns

    def on_event(self, name: str, data: str, offset_ns: int) -> None:
        out = self.out
        out.sse_events += 1
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            # "[DONE]" is no JSON, so it is looked for only here, not in every event.
            if data.strip() == "[DONE]":
                out.done_marker = True
                out.stream_ended = True
            else:
                out.parse_errors += 1
            return
        if not isinstance(doc, dict):
            out.parse_errors += 1
            return
        if (
            name == "error"
            or ("error" in doc and isinstance(doc["error"], dict))
            or ("type" in doc and doc["type"] == "error")
        ):
            found = error_of(doc) or ProviderError(message=text_of(doc.get("message")))
            out.provider_error = found
            out.error_in_stream = found.message or found.type or "error"
            return
        if "type" in doc and doc["type"] == "response.failed":
            # The Responses API's way to end a stream with an error: as an error event would.
            out.provider_error = error_of(doc)
            if out.provider_error is not None:
                found = out.provider_error
                out.error_in_stream = found.message or found.code or "error"
        self._handle(doc, offset_ns)

    def _openai(self, doc: dict[str, Any], offset_ns: int) -> None:
        # Called for nearly every event of every stream: the checks are written out (rather
        # than `x = x or _str(...)`, `_text(_str(...) or "")`) because the calls add up.
        out = self.out
        if not out.model:
            out.model = _str(doc.get("model"))
        if not out.response_id:
            out.response_id = _str(doc.get("id"))
        for choice in doc.get("choices") or []:
            index = choice.get("index", 0) or 0
            # Every choice the stream names is a choice, with or without text (a tool call).
            texts = self.texts.get(index)
            if texts is None:
                texts = self.texts[index] = []
            delta = choice.get("delta")
            if isinstance(delta, dict):
                content = delta.get("content")
                if content and isinstance(content, str):
                    # self._text, inlined: one call less for nearly every event.
                    texts.append(content)
                    if out.first_token_offset_ns is None:
                        out.first_token_offset_ns = offset_ns
                for call in delta.get("tool_calls") or []:
                    self._first_token(offset_ns)
                    slot = self.tools.setdefault(
                        (index, call.get("index", 0)),
                        {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
                    )
                    slot["id"] = slot["id"] or call.get("id")
                    function = call.get("function") or {}
                    slot["function"]["name"] += function.get("name") or ""
                    slot["function"]["arguments"] += function.get("arguments") or ""
            else:  # legacy /v1/completions stream
                self._text(index, _str(choice.get("text")) or "", offset_ns)
            reason = choice.get("finish_reason")
            if reason and index == 0 and isinstance(reason, str):
                out.finish_reason = reason
        usage = doc.get("usage")
        if isinstance(usage, dict):
            _openai_usage(usage, out.usage)

    def _anthropic(self, doc: dict[str, Any], offset_ns: int) -> None:
        kind = doc.get("type")
        if kind == "message_stop":
            self.out.stream_ended = True
        if kind == "message_start":
            self.texts.setdefault(0, [])  # one message: one choice, even without text
            message = doc.get("message") or {}
            self.out.model = _str(message.get("model"))
            self.out.response_id = _str(message.get("id"))
            # Its output_tokens is a placeholder (usually 1): the count comes in message_delta,
            # so a stream cut before that has no output count rather than a wrong one.
            usage = message.get("usage")
            if isinstance(usage, dict):
                usage = {k: v for k, v in usage.items() if k != "output_tokens"}
            _anthropic_usage(usage, self.out.usage)
        elif kind == "content_block_start":
            block = doc.get("content_block") or {}
            if block.get("type") == "tool_use":
                self._first_token(offset_ns)
                self.tools[(0, doc.get("index", 0))] = {
                    "id": block.get("id"),
                    "name": block.get("name"),
                    "input_json": "",
                }
        elif kind == "content_block_delta":
            delta = doc.get("delta") or {}
            if delta.get("type") == "text_delta":
                self._text(0, delta.get("text", ""), offset_ns)
            elif delta.get("type") == "input_json_delta":
                slot = self.tools.get((0, doc.get("index", 0)))
                if slot is not None:
                    slot["input_json"] += delta.get("partial_json", "")
        elif kind == "message_delta":
            self.out.finish_reason = _str((doc.get("delta") or {}).get("stop_reason"))
            _anthropic_usage(doc.get("usage"), self.out.usage)

    def _responses(self, doc: dict[str, Any], offset_ns: int) -> None:
        kind = doc.get("type")
        if kind == "response.output_text.delta":
            self._text(0, doc.get("delta", ""), offset_ns)
        elif kind == "response.function_call_arguments.delta":
            self._first_token(offset_ns)
        elif kind in {"response.completed", "response.failed", "response.incomplete"}:
            self.out.stream_ended = True
            self.texts.setdefault(0, [])
            response = doc.get("response") or {}
            self.out.model = _str(response.get("model"))
            self.out.response_id = _str(response.get("id"))
            self.out.finish_reason = _str(response.get("status"))
            _responses_usage(response.get("usage"), self.out.usage)
            for item in response.get("output") or []:
                if item.get("type") == "function_call":
                    self.out.tool_calls.append(
                        {
                            "id": item.get("call_id"),
                            "name": item.get("name"),
                            "arguments": item.get("arguments"),
                        }
                    )
        elif kind == "response.created":
            self.texts.setdefault(0, [])  # one response: one choice, even without text
            response = doc.get("response") or {}
            self.out.model = _str(response.get("model"))
            self.out.response_id = _str(response.get("id"))

    def result(self) -> Assembled:
        out = self.out
        count = max(self.texts, default=-1) + 1
        out.choices = ["".join(self.texts.get(i, [])) for i in range(count)]
        out.text = out.choices[0] if out.choices else ""
        for (_, _), call in sorted(self.tools.items()):
            if "input_json" in call:
                raw = call.pop("input_json")
                try:
                    call["input"] = orjson.loads(raw) if raw else {}
                except orjson.JSONDecodeError:
                    call["input"] = raw
            out.tool_calls.append(call)
        return out


# --- usage --------------------------------------------------------------------------------------


def _openai_usage(raw: Any, usage: Usage) -> None:
    if not isinstance(raw, dict):
        return
    usage.prompt_tokens = _int(raw.get("prompt_tokens"))
    usage.completion_tokens = _int(raw.get("completion_tokens"))
    usage.total_tokens = _int(raw.get("total_tokens"))
    usage.cached_tokens = _int((raw.get("prompt_tokens_details") or {}).get("cached_tokens"))
    usage.reasoning_tokens = _int(
        (raw.get("completion_tokens_details") or {}).get("reasoning_tokens")
    )


def _anthropic_usage(raw: Any, usage: Usage) -> None:
    if not isinstance(raw, dict):
        return
    if "input_tokens" in raw:
        usage.prompt_tokens = _int(raw.get("input_tokens"))
    if "output_tokens" in raw:
        usage.completion_tokens = _int(raw.get("output_tokens"))
    if "cache_read_input_tokens" in raw:
        usage.cached_tokens = _int(raw.get("cache_read_input_tokens"))
    if usage.prompt_tokens is not None and usage.completion_tokens is not None:
        usage.total_tokens = usage.prompt_tokens + usage.completion_tokens


def _responses_usage(raw: Any, usage: Usage) -> None:
    if not isinstance(raw, dict):
        return
    usage.prompt_tokens = _int(raw.get("input_tokens"))
    usage.completion_tokens = _int(raw.get("output_tokens"))
    usage.total_tokens = _int(raw.get("total_tokens"))
    usage.cached_tokens = _int((raw.get("input_tokens_details") or {}).get("cached_tokens"))
    usage.reasoning_tokens = _int((raw.get("output_tokens_details") or {}).get("reasoning_tokens"))


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
