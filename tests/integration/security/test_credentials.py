"""S1: credentials planted everywhere a key can travel are stored nowhere, only fingerprinted.

One test, several exchanges (plain, streamed, an upstream error echoing the keys, a connect
failure), then a grep of every record on the exchange and dead-letter topics, every ClickHouse
table, every log record of the test process and the journal directory (when there is one).
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import quote

import aiohttp
import orjson
import pytest

from proxy.app import SETTINGS, create_app
from proxy.redaction import Fingerprinter
from proxy.settings import Provider, ProxySettings, Secret
from tests.integration.conftest import SERVICE_KEY, Pipeline, ProxyFactory, serve
from tests.integration.security.scan import (
    clickhouse_bytes,
    directory_bytes,
    leaks,
    raw_exchange,
    status_of,
    topic_bytes,
    wait_ready,
)
from tests.key_shapes import ALL as CORPUS
from tests.key_shapes import BEARER_TOKEN, NAMED, SHAPED

BEARER = "sk-canary-bearer-a1b2c3d4e5"
API_KEY = "canary-apikey-hdr-f6a7b8c9"
X_API_KEY = "canary-xapikey-0d1e2f3a4b"
QUERY_KEY = "canary-query-5c6d7e8f9a"
COOKIE = "canary-cookie-b0c1d2e3f4"
BODY_API_KEY = "canary-body-apikey-a5b6c7d8"
BODY_CAMEL = "canary-body-camel-e9f0a1b2"
BODY_NESTED = "canary-body-nested-c3d4e5f6"
ALL = (BEARER, API_KEY, X_API_KEY, QUERY_KEY, COOKIE, BODY_API_KEY, BODY_CAMEL, BODY_NESTED)
FP = Fingerprinter(b"test-fingerprint-key")

HEADERS = {
    "Authorization": f"Bearer {BEARER}",
    "api-key": API_KEY,
    "x-api-key": X_API_KEY,
    "Cookie": f"session={COOKIE}; theme=dark",
    "Content-Type": "application/json",
}


def _body(*, stream: bool) -> bytes:
    # Spacing as a hand-written client would send it, to prove the stored bytes keep it.
    return (
        b'{"model": "gpt-4o-mini", "stream": ' + (b"true" if stream else b"false") + b",\n"
        b'  "api_key": "' + BODY_API_KEY.encode() + b'", "apiKey":"' + BODY_CAMEL.encode() + b'",'
        b' "extra_headers": {"Authorization": "Bearer ' + BODY_NESTED.encode() + b'"},'
        b' "messages": [{"role": "user", "content": "my key is ' + BEARER.encode() + b'"}]}'
    )


def _journal_dir(settings: ProxySettings) -> Path | None:
    # The journal belongs to another part of the proxy; scan its directory whatever it is called.
    for name in ("journal_dir", "journal_path"):
        value = getattr(settings, name, None)
        if value:
            return Path(value)
    return None


async def test_planted_credentials_are_stored_nowhere(
    pipeline: Pipeline, pipeline_factory: ProxyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"{pipeline.proxy_url}/v1/chat/completions?key={QUERY_KEY}&user=alice"
    ids: list[str] = []
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=_body(stream=False), headers=HEADERS) as r:
            assert r.status == 200, await r.text()
            assert "Echo: my key is" in (await r.json())["choices"][0]["message"]["content"]
            ids.append(r.headers["x-logorhythms-request-id"])
        async with http.post(url, data=_body(stream=True), headers=HEADERS) as r:
            assert r.status == 200
            assert b"data: [DONE]" in await r.read()
            ids.append(r.headers["x-logorhythms-request-id"])
        echo_headers = {**HEADERS, "x-fake-echo-auth": "1"}
        async with http.post(url, data=_body(stream=False), headers=echo_headers) as r:
            assert r.status == 401
            echoed = await r.read()
            ids.append(r.headers["x-logorhythms-request-id"])
        # The upstream echoed the service key it was sent; the client never sees it.
        assert b"Incorrect API key provided: Bearer *****" in echoed
        assert SERVICE_KEY.encode() not in echoed

        # A failure path: the upstream cannot be reached at all, so the error branches and their
        # logging run with the full request (query key included) in hand.
        dead = ProxySettings(
            providers=(
                Provider(
                    name="openai",
                    base_url="http://127.0.0.1:9/v1",  # discard port: connection refused
                    api_key=Secret(SERVICE_KEY),
                ),
            ),
            kafka_bootstrap_servers=pipeline.bootstrap,
            topic=pipeline.topic,
            fingerprint_key=Secret("test-fingerprint-key"),
        )
        runner, dead_url = await serve(create_app(dead))
        try:
            await wait_ready(http, dead_url)  # so its events are delivered, not cut at cleanup
            async with http.post(
                f"{dead_url}/v1/chat/completions?key={QUERY_KEY}",
                data=_body(stream=False),
                headers=HEADERS,
            ) as r:
                assert r.status == 502
                assert not leaks([*ALL, SERVICE_KEY], {"502 body": await r.read()})
                ids.append(r.headers["x-logorhythms-request-id"])
        finally:
            await runner.cleanup()  # flushes its producer: its events are on the topic now

    rows = {rid: await pipeline.exchange(rid) for rid in ids}
    plain = rows[ids[0]]
    # Fingerprints in place of the secrets, every other byte of the body as the client sent it.
    expected_body = _body(stream=False)
    for secret in (BEARER, BODY_API_KEY, BODY_CAMEL, BODY_NESTED):
        expected_body = expected_body.replace(secret.encode(), FP.fingerprint(secret).encode())
    assert plain["request_body"] == expected_body.decode()
    assert plain["client_key_fingerprint"] == FP.fingerprint(BEARER)
    assert plain["request_headers"]["authorization"] == f"Bearer {FP.fingerprint(BEARER)}"
    assert plain["request_headers"]["x-api-key"] == FP.fingerprint(X_API_KEY)
    assert plain["response_text"] == f"Echo: my key is {FP.fingerprint(BEARER)}"
    assert orjson.loads(plain["request_body"])["apiKey"] == FP.fingerprint(BODY_CAMEL)
    assert rows[ids[1]]["outcome"] == "ok"
    assert rows[ids[2]]["outcome"] == "upstream_http_error"
    assert rows[ids[3]]["outcome"] == "connect_error"
    # The client's keys never went upstream either (the service key replaced them).
    for received in pipeline.upstream.received:
        sent = f"{received.query} {received.headers}".encode()
        assert not leaks([BEARER, API_KEY, X_API_KEY, COOKIE, QUERY_KEY], {"upstream": sent})
        assert received.query == "user=alice"

    places = {
        "kafka exchanges topic": await topic_bytes(pipeline.bootstrap, pipeline.topic),
        "kafka dead-letter topic": await topic_bytes(
            pipeline.bootstrap, f"{pipeline.topic}.deadletter"
        ),
        "journal": directory_bytes(_journal_dir(pipeline.proxy_app[SETTINGS])),
        "logs": caplog.text.encode(),
        **{
            f"clickhouse {table}": data
            for table, data in (await clickhouse_bytes(pipeline.clickhouse)).items()
        },
    }
    assert all(rid.encode() in places["kafka exchanges topic"] for rid in ids)
    assert ids[0].encode() in places["clickhouse exchanges"]
    assert b"publishing to Kafka" in places["logs"]  # the proxy's own log records are captured
    assert leaks([*ALL, SERVICE_KEY], places) == []


def _corpus_headers() -> dict[str, str]:
    headers = {
        "Authorization": f"Bearer {SHAPED['openai project']}",
        "X-Auth-Token": NAMED["X-Auth-Token"],
        "anthropic-api-key": NAMED["anthropic-api-key"],
        "OpenAI-Api-Key": NAMED["OpenAI-Api-Key"],
        "X-Session-Token": NAMED["X-Session-Token"],
        "X-Forwarded-Authorization": f"Bearer {BEARER_TOKEN}",
        "Content-Type": "application/json",
    }
    # Every shape under a header name that says nothing.
    headers.update({f"X-Note-{i}": f"note {key}" for i, key in enumerate(SHAPED.values())})
    return headers


def _corpus_query() -> str:
    named = f"key={NAMED['query key']}&%256Bey={NAMED['query double-encoded name']}&user=alice"
    return named + "".join(f"&n{i}={quote(k)}" for i, k in enumerate(SHAPED.values()))


def _corpus_body(*, stream: bool) -> bytes:
    arguments = orjson.dumps({"password": NAMED["body tool argument password"], "city": "Oslo"})
    tool_call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "login", "arguments": arguments.decode()},
    }
    # The upstream echoes the last user message: every key comes back in response chunks.
    echoed = [*SHAPED.values(), f"Bearer {BEARER_TOKEN}", NAMED["body token"]]
    return orjson.dumps(
        {
            "model": "gpt-4o-mini",
            "stream": stream,
            "max_tokens": 50,
            "openai_api_key": NAMED["body openai_api_key"],
            "token": NAMED["body token"],
            "metadata": {"deep": {"nested": {"client_secret": NAMED["body nested client_secret"]}}},
            "messages": [
                {"role": "assistant", "tool_calls": [tool_call]},
                {"role": "user", "content": " ".join(echoed)},
            ],
        }
    )


async def test_key_shapes_under_any_name_in_any_position_are_stored_nowhere(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"{pipeline.proxy_url}/v1/chat/completions?{_corpus_query()}"
    ids: list[str] = []
    async with aiohttp.ClientSession() as http:
        for stream in (False, True):
            async with http.post(
                url, data=_corpus_body(stream=stream), headers=_corpus_headers()
            ) as r:
                assert r.status == 200, await r.text()
                received = await r.read()
                ids.append(r.headers["x-logorhythms-request-id"])
            # The client gets the upstream's bytes unchanged: the echoed keys are all there.
            assert all(key.encode() in received for key in SHAPED.values())
        echo = {**_corpus_headers(), "x-fake-echo-auth": "1"}
        async with http.post(url, data=_corpus_body(stream=False), headers=echo) as r:
            assert r.status == 401
            ids.append(r.headers["x-logorhythms-request-id"])
        # A key in a pass-through path segment is sent (the client put it there) but not stored.
        async with http.get(
            f"{pipeline.proxy_url}/v1/files/{SHAPED['hugging face']}", headers=_corpus_headers()
        ) as r:
            ids.append(r.headers["x-logorhythms-request-id"])
    # A key behind an encoded "?" in the path: refused, captured as rejected, stored redacted.
    for target in (
        f"/v1/files%3Fkey={NAMED['path key']}",
        f"/v1/files%253Fkey%253D{NAMED['path key']}",
        f"/v1/files/x%3Ftoken={SHAPED['gitlab']}",
    ):
        raw = await raw_exchange(
            pipeline.proxy_url,
            f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(),
        )
        assert status_of(raw) == 400
        head = raw.partition(b"\r\n\r\n")[0].decode()
        ids.append(head.lower().split("x-logorhythms-request-id: ")[1].split("\r\n")[0])

    rows = {rid: await pipeline.exchange(rid, "outcome, response_text, path") for rid in ids}
    assert [rows[rid]["outcome"] for rid in ids[:3]] == ["ok", "ok", "upstream_http_error"]
    assert [rows[rid]["outcome"] for rid in ids[4:]] == ["rejected"] * 3
    # The echoed keys are fingerprints in the stored response, and the text is otherwise kept.
    echoed = rows[ids[0]]["response_text"]
    assert FP.fingerprint(SHAPED["xai"]) in echoed
    assert FP.fingerprint(NAMED["body token"]) in echoed
    plain = await pipeline.exchange(ids[0], "request_body, request_headers")
    assert orjson.loads(plain["request_body"])["token"] == FP.fingerprint(NAMED["body token"])
    assert plain["request_headers"]["x-auth-token"] == FP.fingerprint(NAMED["X-Auth-Token"])

    places = {
        "kafka exchanges topic": await topic_bytes(pipeline.bootstrap, pipeline.topic),
        "kafka dead-letter topic": await topic_bytes(
            pipeline.bootstrap, f"{pipeline.topic}.deadletter"
        ),
        "journal": directory_bytes(_journal_dir(pipeline.proxy_app[SETTINGS])),
        "logs": caplog.text.encode(),
        **{
            f"clickhouse {table}": data
            for table, data in (await clickhouse_bytes(pipeline.clickhouse)).items()
        },
    }
    assert all(rid.encode() in places["kafka exchanges topic"] for rid in ids)
    assert places["clickhouse chunks_raw"]  # the echoes were stored, as fingerprints
    assert leaks([*CORPUS, SERVICE_KEY], places) == []
