"""OpenAI's endpoints: chat completions, completions, embeddings, the Responses API, models and
files."""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from deploy.local.fake_upstream.wire import (
    Json,
    echo_text,
    first_tool,
    json_response,
    last_user_text,
    logprobs_doc,
    maybe_fail,
    next_id,
    openai_error_frame,
    provider_request_id,
    read_object,
    split_pieces,
    sse,
    stream_events,
    tool_arguments,
    usage_doc,
)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    failed = await maybe_fail(request, "openai")
    if failed is not None:
        return failed
    body = await read_object(request, "openai")
    if isinstance(body, web.Response):
        return body
    model = body.get("model", "fake-model")
    user_text = last_user_text(body)
    pieces = split_pieces(request, echo_text(user_text, body))
    n = body.get("n") or 1
    tool = first_tool(body)
    completion_id = next_id("chatcmpl")
    created = int(time.time())
    usage = usage_doc(user_text, pieces, n)
    if not body.get("stream"):
        choices = []
        for index in range(n):
            message: Json = {"role": "assistant", "content": "".join(pieces)}
            if tool is not None:
                message = {"role": "assistant", "content": None, "tool_calls": [
                    {"id": f"call_{index}", "type": "function",
                     "function": {"name": tool, "arguments": "".join(tool_arguments(user_text))}}
                ]}  # fmt: skip
            choices.append({"index": index, "message": message,
                            "finish_reason": "tool_calls" if tool else "stop",
                            "logprobs": logprobs_doc("".join(pieces)) if body.get("logprobs")
                            else None})  # fmt: skip
        return json_response(
            {"id": completion_id, "object": "chat.completion", "created": created, "model": model,
             "choices": choices, "usage": usage}, provider_request_id("openai"),
        )  # fmt: skip

    def frame(choices: list[Json], **extra: Any) -> bytes:
        return sse({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                     "model": model, "choices": choices, **extra})  # fmt: skip

    def deltas() -> Iterator[bytes]:
        yield frame([{"index": i, "delta": {"role": "assistant", "content": ""},
                      "finish_reason": None} for i in range(n)])  # fmt: skip
        if tool is not None:
            yield frame([{"index": 0, "finish_reason": None, "delta": {"tool_calls": [
                {"index": 0, "id": "call_0", "type": "function",
                 "function": {"name": tool, "arguments": ""}}]}}])  # fmt: skip
            for part in tool_arguments(user_text):
                yield frame([{"index": 0, "finish_reason": None, "delta": {"tool_calls": [
                    {"index": 0, "function": {"arguments": part}}]}}])  # fmt: skip
            yield frame([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}])
            return
        for piece in pieces:
            for index in range(n):
                choice: Json = {"index": index, "delta": {"content": piece}, "finish_reason": None}
                if body.get("logprobs"):
                    choice["logprobs"] = logprobs_doc(piece)
                yield frame([choice])
        yield frame([{"index": i, "delta": {}, "finish_reason": "stop"} for i in range(n)])

    frames = list(deltas())
    if (body.get("stream_options") or {}).get("include_usage"):
        frames.append(frame([], usage=usage))
    frames.append(b"data: [DONE]\n\n")
    return await stream_events(request, "openai", frames, openai_error_frame(), opening=1)


async def completions(request: web.Request) -> web.StreamResponse:
    failed = await maybe_fail(request, "openai")
    if failed is not None:
        return failed
    body = await read_object(request, "openai")
    if isinstance(body, web.Response):
        return body
    model = body.get("model", "fake-model")
    prompt = last_user_text(body)
    pieces = split_pieces(request, echo_text(prompt))
    n = body.get("n") or 1
    completion_id = next_id("cmpl")
    created = int(time.time())

    def logprobs(text: str) -> Json | None:
        if body.get("logprobs") is None:
            return None
        return {"tokens": [text], "token_logprobs": [-0.25], "top_logprobs": None,
                "text_offset": [0]}  # fmt: skip

    def doc(choices: list[Json], **extra: Any) -> Json:
        return {"id": completion_id, "object": "text_completion", "created": created,
                "model": model, "choices": choices, **extra}  # fmt: skip

    usage = usage_doc(prompt, pieces, n)
    if not body.get("stream"):
        text = "".join(pieces)
        choices = [{"index": i, "text": text, "finish_reason": "stop", "logprobs": logprobs(text)}
                   for i in range(n)]  # fmt: skip
        return json_response(doc(choices, usage=usage), provider_request_id("openai"))
    frames = [sse(doc([{"index": 0, "text": "", "finish_reason": None, "logprobs": None}]))]
    for piece in pieces:
        for i in range(n):
            choice = {"index": i, "text": piece, "finish_reason": None, "logprobs": logprobs(piece)}
            frames.append(sse(doc([choice])))
    frames.append(sse(doc([{"index": i, "text": "", "finish_reason": "stop", "logprobs": None}
                            for i in range(n)])))  # fmt: skip
    if (body.get("stream_options") or {}).get("include_usage"):
        frames.append(sse(doc([], usage=usage)))
    frames.append(b"data: [DONE]\n\n")
    return await stream_events(request, "openai", frames, openai_error_frame(), opening=1)


# --- OpenAI: embeddings, models, files ----------------------------------------------------------


def _vector(text: str, dimensions: int) -> list[float]:
    seed = sum(text.encode()) or 1
    return [((seed * (i + 1)) % 997) / 997 for i in range(dimensions)]


async def embeddings(request: web.Request) -> web.StreamResponse:
    failed = await maybe_fail(request, "openai")
    if failed is not None:
        return failed
    body = await read_object(request, "openai")
    if isinstance(body, web.Response):
        return body
    inputs = body.get("input")
    texts = [inputs] if isinstance(inputs, str) else [str(i) for i in inputs or []]
    dimensions = body.get("dimensions") or 8
    data = []
    for index, text in enumerate(texts):
        vector = _vector(text, dimensions)
        embedding: Any = vector
        if body.get("encoding_format") == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = sum(len(t.split()) for t in texts)
    return json_response(
        {"object": "list", "data": data, "model": body.get("model", "fake-embedding"),
         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}, provider_request_id("openai"),
    )  # fmt: skip


async def models(request: web.Request) -> web.StreamResponse:
    if "anthropic-version" in request.headers:
        return json_response(
            {"data": [{"type": "model", "id": "claude-fake", "display_name": "Claude Fake",
                       "created_at": "2025-01-01T00:00:00Z"}],
             "has_more": False, "first_id": "claude-fake", "last_id": "claude-fake"},
            provider_request_id("anthropic"),
        )  # fmt: skip
    return json_response(
        {"object": "list", "data": [{"id": "fake-model", "object": "model", "created": 0,
                                     "owned_by": "fake"}]}, provider_request_id("openai"),
    )  # fmt: skip


async def model(request: web.Request) -> web.StreamResponse:
    name = request.match_info["model"]
    return json_response(
        {"id": name, "object": "model", "created": 0, "owned_by": "fake"},
        provider_request_id("openai"),
    )


async def files(request: web.Request) -> web.StreamResponse:
    return json_response(
        {"object": "list", "data": [], "has_more": False}, provider_request_id("openai")
    )


# --- OpenAI: the Responses API ------------------------------------------------------------------


async def responses(request: web.Request) -> web.StreamResponse:
    failed = await maybe_fail(request, "openai")
    if failed is not None:
        return failed
    body = await read_object(request, "openai")
    if isinstance(body, web.Response):
        return body
    user_text = last_user_text(body)
    pieces = split_pieces(request, echo_text(user_text))
    response_id, item_id = next_id("resp"), next_id("msg")
    text = "".join(pieces)
    usage = {"input_tokens": len(user_text.split()), "output_tokens": len(pieces),
             "total_tokens": len(user_text.split()) + len(pieces),
             "input_tokens_details": {"cached_tokens": 0},
             "output_tokens_details": {"reasoning_tokens": 0}}  # fmt: skip

    def item(status: str, content: str | None) -> Json:
        part: Json = {"type": "output_text", "text": content, "annotations": [], "logprobs": []}
        parts = [] if content is None else [part]
        return {"id": item_id, "type": "message", "status": status, "role": "assistant",
                "content": parts}  # fmt: skip

    def response(status: str, output: list[Json], final_usage: Json | None) -> Json:
        return {"id": response_id, "object": "response", "created_at": int(time.time()),
                "status": status, "model": body.get("model", "fake-model"), "output": output,
                "usage": final_usage, "error": None, "incomplete_details": None,
                "instructions": body.get("instructions"), "metadata": {},
                "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
                "temperature": body.get("temperature", 1.0), "top_p": 1.0}  # fmt: skip

    done = response("completed", [item("completed", text)], usage)
    if not body.get("stream"):
        return json_response(done, provider_request_id("openai"))
    events: list[Json] = [
        {"type": "response.created", "response": response("in_progress", [], None)},
        {"type": "response.in_progress", "response": response("in_progress", [], None)},
        {"type": "response.output_item.added", "output_index": 0,
         "item": item("in_progress", None)},
        {"type": "response.content_part.added", "item_id": item_id, "output_index": 0,
         "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}},
        *({"type": "response.output_text.delta", "item_id": item_id, "output_index": 0,
           "content_index": 0, "delta": piece, "logprobs": []} for piece in pieces),
        {"type": "response.output_text.done", "item_id": item_id, "output_index": 0,
         "content_index": 0, "text": text, "logprobs": []},
        {"type": "response.content_part.done", "item_id": item_id, "output_index": 0,
         "content_index": 0, "part": {"type": "output_text", "text": text, "annotations": []}},
        {"type": "response.output_item.done", "output_index": 0, "item": item("completed", text)},
        {"type": "response.completed", "response": done},
    ]  # fmt: skip
    frames = [
        sse({**event, "sequence_number": number}, event["type"])
        for number, event in enumerate(events)
    ]
    error = sse(
        {"type": "error", "code": "server_error", "message": "The server had an error",
         "param": None, "sequence_number": len(events)}, "error",
    )  # fmt: skip
    return await stream_events(request, "openai", frames, error, opening=4)
