"""The OpenAI API through the official SDK, only its base URL changed; every exchange in SQL."""

from __future__ import annotations

import base64
import hashlib
import os

import openai
import orjson
import pytest

from tests.integration.api.conftest import CLIENT_KEY, REQUEST_ID
from tests.integration.conftest import SERVICE_KEY, Pipeline, ProxyFactory

USER = [{"role": "user", "content": "what is the weather in Oslo"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"text": {"type": "string"}}},
    },
}


async def test_tool_call_streamed_in_pieces(api: Pipeline, oai: openai.AsyncOpenAI) -> None:
    raw = await oai.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=USER,  # type: ignore[arg-type]
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        stream=True,
    )
    arguments = ""
    name = None
    async for chunk in raw.parse():
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            name = name or (call.function.name if call.function else None)
            arguments += (call.function.arguments or "") if call.function else ""
    assert name == "get_weather"
    assert orjson.loads(arguments) == {"text": "what is the weather in Oslo"}

    row = await api.exchange(raw.headers[REQUEST_ID])
    assert row["outcome"] == "ok"
    assert row["tools_count"] == 1
    assert row["tool_calls_count"] == 1
    stored = orjson.loads(row["tool_calls"])[0]
    assert stored["function"] == {"name": "get_weather", "arguments": arguments}
    assert row["finish_reason"] == "tool_calls"
    assert row["chunk_count"] >= 1


async def test_a_tool_call_is_one_empty_choice_streamed_or_not(
    api: Pipeline, oai: openai.AsyncOpenAI
) -> None:
    rows = []
    for stream in (False, True):
        raw = await oai.chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=USER,  # type: ignore[arg-type]
            tools=[WEATHER_TOOL],  # type: ignore[list-item]
            stream=stream,
        )
        if stream:
            async for _ in raw.parse():  # type: ignore[union-attr]
                pass
        else:
            assert raw.parse().choices[0].message.content is None  # type: ignore[union-attr]
        row = await api.exchange(raw.headers[REQUEST_ID], "choices, response_text, tool_calls")
        call = orjson.loads(row["tool_calls"])[0]
        rows.append((row["choices"], row["response_text"], call["function"]))
    assert rows[0] == rows[1]
    assert rows[0][:2] == ([""], "")


@pytest.mark.parametrize("megabytes", [1, 8, 31])
async def test_large_image_request_is_captured_whole(
    api: Pipeline, oai: openai.AsyncOpenAI, megabytes: int
) -> None:
    """A request full of base64 images, up to the 32 MiB cap, is stored byte-identical and its
    conversation parsed from the whole body."""
    image = base64.b64encode(os.urandom(megabytes * 1_000_000 * 3 // 4 // 2)).decode()
    url = f"data:image/png;base64,{image}"
    raw = await oai.chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "describe these"},
                    {"type": "image_url", "image_url": {"url": url}},
                    {"type": "image_url", "image_url": {"url": url, "detail": "high"}},
                ],
            }
        ],
        temperature=0.25,
    )
    assert raw.parse().choices[0].message.content == "Echo: describe these"
    sent = api.upstream.received[-1].body
    assert megabytes * 1_000_000 <= len(sent) < megabytes * 1_000_000 + 1024
    digest = hashlib.sha256(sent).hexdigest()
    request_id = raw.headers[REQUEST_ID]
    row = await api.exchange(
        request_id,
        "request_body_size, request_body_truncated, request_json_valid, messages, temperature, "
        "outcome, bytes_in, lower(hex(SHA256(request_body)))",
    )
    assert row["request_body_size"] == len(sent) == row["bytes_in"]
    assert row["request_body_truncated"] is False
    assert row["request_json_valid"] is True
    assert row["lower(hex(SHA256(request_body)))"] == digest
    [message] = row["messages"]
    assert message["role"] == "user"
    assert "describe these" in message["content"]
    assert row["temperature"] == 0.25
    assert row["outcome"] == "ok"
    raw_rows = await api.clickhouse.rows(
        "SELECT body_size, body_truncated, body_sha256, lower(hex(SHA256(body))) "
        "FROM requests_raw FINAL WHERE request_id = {id:String}",
        {"id": request_id},
    )
    assert raw_rows == [(len(sent), False, digest, digest)]


async def test_body_above_the_capture_cap_is_stored_as_its_first_part_size_and_hash(
    api_factory: ProxyFactory,
) -> None:
    """Above the cap the body is still served whole; the row has its first part, flagged, and
    the size and SHA-256 of the whole."""
    cap = 1024 * 1024  # the event cap configured here; the body stored is this less 4 KiB
    api = await api_factory(max_event_bytes=cap)
    image = base64.b64encode(os.urandom(3 * 1024 * 1024)).decode()
    async with openai.AsyncOpenAI(
        base_url=f"{api.proxy_url}/v1", api_key=CLIENT_KEY, max_retries=0
    ) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "describe this"},
                        {
                            "type": "image_url",
                            "image_url": {"url": f"data:image/png;base64,{image}"},
                        },
                    ],
                }
            ],
        )
    assert raw.parse().choices[0].message.content == "Echo: describe this"
    sent = api.upstream.received[-1].body
    assert image.encode() in sent
    request_id = raw.headers[REQUEST_ID]
    row = await api.exchange(
        request_id, "request_body_size, request_body_truncated, messages, outcome, bytes_in"
    )
    assert row["request_body_size"] == len(sent) == row["bytes_in"]
    assert row["request_body_truncated"] is True
    assert row["messages"] == []
    assert row["outcome"] == "ok"
    raw_rows = await api.clickhouse.rows(
        "SELECT body_size, body_truncated, body_sha256, lower(hex(SHA256(body))) "
        "FROM requests_raw FINAL WHERE request_id = {id:String}",
        {"id": request_id},
    )
    first_part = sent[: cap - 4096]
    assert raw_rows == [
        (len(sent), True, hashlib.sha256(sent).hexdigest(), hashlib.sha256(first_part).hexdigest())
    ]


async def test_json_mode_n_and_logprobs(api: Pipeline, oai: openai.AsyncOpenAI) -> None:
    raw = await oai.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=USER,  # type: ignore[arg-type]
        response_format={"type": "json_object"},
        n=2,
        logprobs=True,
    )
    completion = raw.parse()
    assert len(completion.choices) == 2
    for choice in completion.choices:
        assert orjson.loads(choice.message.content or "")
        assert choice.logprobs is not None
        assert choice.logprobs.content
    row = await api.exchange(
        raw.headers[REQUEST_ID], "n, response_format, choices, usage_estimated, request_params"
    )
    assert row["n"] == 2
    assert row["response_format"] == "json_object"
    assert row["choices"] == [c.message.content for c in completion.choices]
    assert row["usage_estimated"] is False
    assert orjson.loads(row["request_params"])["logprobs"] is True


@pytest.mark.parametrize("include_usage", [True, False])
async def test_streamed_n_choices_with_and_without_usage(
    api: Pipeline, oai: openai.AsyncOpenAI, include_usage: bool
) -> None:
    raw = await oai.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=USER,  # type: ignore[arg-type]
        n=2,
        logprobs=True,
        stream=True,
        stream_options={"include_usage": include_usage},
    )
    texts = ["", ""]
    usage = None
    async for chunk in raw.parse():
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
        usage = chunk.usage or usage
    assert texts == ["Echo: what is the weather in Oslo"] * 2
    row = await api.exchange(
        raw.headers[REQUEST_ID], "choices, usage_estimated, completion_tokens, done_marker"
    )
    assert row["choices"] == texts
    assert row["done_marker"] is True
    # U6: usage from the final chunk when the client asked for it, else estimated and flagged.
    assert row["usage_estimated"] is (not include_usage)
    if include_usage:
        assert usage is not None
        assert row["completion_tokens"] == usage.completion_tokens
    else:
        assert usage is None
        assert row["completion_tokens"] > 0


async def test_legacy_completions_stream_with_logprobs(
    api: Pipeline, oai: openai.AsyncOpenAI
) -> None:
    raw = await oai.completions.with_raw_response.create(
        model="gpt-3.5-turbo-instruct", prompt="count to three", logprobs=1, stream=True
    )
    text = ""
    async for chunk in raw.parse():
        text += "".join(c.text for c in chunk.choices)
    assert text == "Echo: count to three"
    row = await api.exchange(raw.headers[REQUEST_ID], "endpoint, response_text, finish_reason")
    assert row == {"endpoint": "/v1/completions", "response_text": text, "finish_reason": "stop"}


async def test_embeddings(api: Pipeline, oai: openai.AsyncOpenAI) -> None:
    raw = await oai.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=["one two", "three"]
    )
    result = raw.parse()
    assert [len(d.embedding) for d in result.data] == [8, 8]
    row = await api.exchange(
        raw.headers[REQUEST_ID], "endpoint, outcome, prompt_tokens, usage_estimated, stream"
    )
    assert row == {
        "endpoint": "/v1/embeddings",
        "outcome": "ok",
        "prompt_tokens": result.usage.prompt_tokens,
        "usage_estimated": False,
        "stream": False,
    }


async def test_responses_api_streaming(api: Pipeline, oai: openai.AsyncOpenAI) -> None:
    raw = await oai.responses.with_raw_response.create(
        model="gpt-4.1-mini", input="tell me a story", instructions="be brief", stream=True
    )
    kinds = []
    text = ""
    completed = None
    async for event in raw.parse():
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            text += event.delta
        if event.type == "response.completed":
            completed = event.response
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    assert text == "Echo: tell me a story"
    assert completed is not None
    assert completed.output_text == text
    row = await api.exchange(
        raw.headers[REQUEST_ID],
        "endpoint, response_text, system_prompt, prompt_tokens, finish_reason, sse_events",
    )
    assert row["endpoint"] == "/v1/responses"
    assert row["response_text"] == text
    assert row["system_prompt"] == "be brief"
    assert row["prompt_tokens"] == completed.usage.input_tokens  # type: ignore[union-attr]
    assert row["finish_reason"] == "completed"
    assert row["sse_events"] == len(kinds)


async def test_responses_api_whole(api: Pipeline, oai: openai.AsyncOpenAI) -> None:
    raw = await oai.responses.with_raw_response.create(model="gpt-4.1-mini", input="hi there")
    assert raw.parse().output_text == "Echo: hi there"
    row = await api.exchange(raw.headers[REQUEST_ID], "response_text, stream")
    assert row == {"response_text": "Echo: hi there", "stream": False}


async def test_models_lists_the_configured_models_and_is_captured(
    api: Pipeline, oai: openai.AsyncOpenAI
) -> None:
    raw = await oai.models.with_raw_response.list()
    ids = {m.id async for m in raw.parse()}
    assert ids == {"fast", "llama-3.1-8b-instant", "groq/llama-3.1-8b-instant"}
    row = await api.exchange(raw.headers[REQUEST_ID], "endpoint, method, status, response_text")
    assert row["endpoint"] == "/v1/models"
    assert row["method"] == "GET"
    assert row["status"] == 200
    assert not any(r.path == "/v1/models" for r in api.upstream.received)


async def test_other_paths_pass_through_and_are_captured(
    api: Pipeline, oai: openai.AsyncOpenAI
) -> None:
    raw = await oai.files.with_raw_response.list()
    assert [f async for f in raw.parse()] == []
    model = await oai.models.retrieve("gpt-4o")
    assert model.id == "gpt-4o"
    row = await api.exchange(raw.headers[REQUEST_ID], "endpoint, upstream_url, provider, status")
    assert row == {
        "endpoint": "/v1/{tail}",
        "upstream_url": f"{api.upstream.url}/v1/files",
        "provider": "openai",
        "status": 200,
    }
    forwarded = dict(api.upstream.received[-2].headers)
    assert forwarded["Authorization"] == f"Bearer {SERVICE_KEY}"


async def test_upstream_errors_pass_through_with_provider_body(
    api: Pipeline, oai: openai.AsyncOpenAI
) -> None:
    for status, error in ((429, openai.RateLimitError), (503, openai.InternalServerError)):
        with pytest.raises(error) as caught:
            await oai.chat.completions.create(
                model="gpt-4o-mini",
                messages=USER,  # type: ignore[arg-type]
                extra_headers={"x-fake-status": str(status)},
            )
        response = caught.value.response
        assert response.status_code == status
        assert caught.value.body["message"] == f"fake upstream error {status}"  # type: ignore[index]
        row = await api.exchange(
            response.headers[REQUEST_ID],
            "status, upstream_status, outcome, error_type, error_message, response_headers, "
            "chunk_count, provider_error_type, provider_error_code, provider_error_message",
        )
        assert row["status"] == row["upstream_status"] == status
        assert row["outcome"] == "upstream_http_error"
        assert row["error_type"] == f"http_{status}"
        # The provider's own words, not the reason phrase ("Too Many Requests").
        message = f"fake upstream error {status}"
        assert row["error_message"] == row["provider_error_message"] == message
        assert (row["provider_error_type"], row["provider_error_code"]) == ("server_error", "")
        assert row["chunk_count"] >= 1
        count = row["chunk_count"]
        chunks = await api.wait_for(
            "SELECT data FROM chunks_raw FINAL WHERE request_id = {id:String} ORDER BY seq",
            {"id": response.headers[REQUEST_ID]},
            lambda rows, count=count: len(rows) == count,
            binary_columns=("data",),
        )
        assert orjson.loads(b"".join(c[0] for c in chunks)) == response.json()
        if status == 429:
            assert row["response_headers"]["retry-after"] == "1"


async def test_routing_aliases_prefixes_and_unknown_models(
    api: Pipeline, oai: openai.AsyncOpenAI
) -> None:
    for asked in ("fast", "groq/llama-3.1-8b-instant", "llama-3.1-8b-instant"):
        before = len(api.upstream.received)
        raw = await oai.chat.completions.with_raw_response.create(
            model=asked,
            messages=USER,  # type: ignore[arg-type]
        )
        sent = api.upstream.received[before]
        assert orjson.loads(sent.body)["model"] == "llama-3.1-8b-instant"
        # Bring-your-own-key provider: the client's key goes through, never ours.
        assert dict(sent.headers)["Authorization"] == f"Bearer {CLIENT_KEY}"
        row = await api.exchange(
            raw.headers[REQUEST_ID], "provider, model_requested, model_sent, request_body"
        )
        assert row["provider"] == "groq"
        assert row["model_requested"] == asked
        assert row["model_sent"] == "llama-3.1-8b-instant"
        assert orjson.loads(row["request_body"])["model"] == asked  # what the client sent

    before = len(api.upstream.received)
    with pytest.raises(openai.NotFoundError) as caught:
        await oai.chat.completions.create(
            model="groq/no-such-model",
            messages=USER,  # type: ignore[arg-type]
        )
    assert caught.value.code == "model_not_found"
    assert "groq/no-such-model" in caught.value.message
    assert len(api.upstream.received) == before  # nothing went upstream
    row = await api.exchange(
        caught.value.response.headers[REQUEST_ID], "status, outcome, provider, upstream_url"
    )
    assert row == {"status": 404, "outcome": "rejected", "provider": "", "upstream_url": ""}


async def test_unrewritten_body_is_sent_byte_for_byte(api: Pipeline) -> None:
    import httpx2 as httpx

    body = b'{"model":  "gpt-4o-mini", "messages": [{"role":"user","content":"caf\\u00e9"}]}'
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{api.proxy_url}/v1/chat/completions",
            content=body,
            headers={"Content-Type": "application/json", "x-ratelimit-test": "1"},
        )
    assert response.status_code == 200
    assert api.upstream.received[-1].body == body
    row = await api.exchange(
        response.headers[REQUEST_ID], "request_body, upstream_request_id, response_headers"
    )
    assert row["request_body"] == body.decode()
    assert row["upstream_request_id"] == response.headers["x-request-id"]
    assert row["response_headers"]["x-ratelimit-remaining-requests"] == "999"


async def test_models_come_from_upstream_when_none_are_configured(pipeline: Pipeline) -> None:
    async with openai.AsyncOpenAI(
        base_url=f"{pipeline.proxy_url}/v1", api_key=CLIENT_KEY, max_retries=0
    ) as client:
        raw = await client.models.with_raw_response.list()
        assert [m.id async for m in raw.parse()] == ["fake-model"]
    row = await pipeline.exchange(raw.headers[REQUEST_ID], "endpoint, upstream_url")
    assert row == {"endpoint": "/v1/{tail}", "upstream_url": f"{pipeline.upstream.url}/v1/models"}


async def test_upstream_connections_are_pooled_and_kept_alive(
    api: Pipeline, oai: openai.AsyncOpenAI
) -> None:
    before = len(api.upstream.received)
    for _ in range(3):
        await oai.embeddings.create(model="text-embedding-3-small", input="hi")
    ports = {r.peer_port for r in api.upstream.received[before:]}
    assert len(ports) == 1  # one connection, reused
    assert ports != {0}
