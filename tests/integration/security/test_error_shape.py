"""L5/S6: requests that aiohttp itself refuses or cannot route are answered in the API's JSON
error shape (OpenAI's, or Anthropic's for its path or header), echo none of their bytes, and end
the connection; under the C parser (in process) and the pure-Python one (a subprocess)."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
import orjson
import pytest

from proxy.app import EXCHANGE_HANDLER
from tests.integration.conftest import FakeUpstream, Pipeline
from tests.integration.security.conftest import ATTACKER_MARKER
from tests.integration.security.scan import raw_exchange, status_of

M = ATTACKER_MARKER
ANTHROPIC = b"anthropic-version: 2023-06-01\r\n"


@dataclass(frozen=True)
class Case:
    data: bytes
    statuses: frozenset[int]
    dialect: str = "openai"


def _case(data: bytes, *statuses: int, dialect: str = "openai") -> Case:
    return Case(data, frozenset(statuses), dialect)


CASES = {
    "too_many_headers": _case(
        b"POST /v1/messages HTTP/1.1\r\nHost: p\r\n"
        + ANTHROPIC
        + b"".join(b"X-H%d: %s\r\n" % (i, M) for i in range(200))
        + b"\r\n",
        400,
        431,
        dialect="anthropic",
    ),
    "header_too_long": _case(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: p\r\nX-Big: "
        + M
        + b"a" * 65536
        + b"\r\n\r\n",
        400,
        431,
    ),
    "content_length_and_transfer_encoding": _case(
        b"POST /v1/messages HTTP/1.1\r\nHost: p\r\n"
        + ANTHROPIC
        + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        dialect="anthropic",
    ),
    "invalid_method": _case(
        b"FO(O /v1/chat/completions?" + M + b" HTTP/1.1\r\nHost: p\r\n\r\n", 400
    ),
    # llhttp refuses an unknown method; the pure-Python parser takes it as a token, and the
    # proxy refuses it (405) instead of passing it upstream.
    "unknown_method": _case(
        b"FROB /v1/chat/completions?" + M + b" HTTP/1.1\r\nHost: p\r\n\r\n", 400, 405
    ),
    "path_too_long": _case(
        b"GET /v1/" + M + b"a" * 20000 + b" HTTP/1.1\r\nHost: p\r\n\r\n", 400, 414
    ),
    "malformed_request_line": _case(
        b"POST /v1/chat/completions?" + M + b" HTTP/1.1 extra\r\nHost: p\r\n\r\n", 400
    ),
    "not_http_at_all": _case(
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + M + b"\r\n\r\n", 400
    ),
    "connect": _case(b"CONNECT " + M + b".example:443 HTTP/1.1\r\nHost: x:443\r\n\r\n", 400),
    "asterisk_form": _case(b"OPTIONS * HTTP/1.1\r\nHost: " + M + b"\r\n\r\n", 400),
    "absolute_form_get": _case(
        b"GET http://" + M + b".example/v1/models HTTP/1.1\r\nHost: p\r\n\r\n", 400
    ),
}


async def _probe(base_url: str) -> dict[str, bytes | None]:
    """Each case's whole answer, or None when the server kept the connection open."""
    answers: dict[str, bytes | None] = {}
    for name, case in CASES.items():
        try:
            answers[name] = await raw_exchange(base_url, case.data, timeout_s=5)
        except TimeoutError:
            answers[name] = None
    return answers


def _problems(case: Case, answer: bytes | None) -> list[str]:
    if answer is None:
        return ["the connection was left open"]
    head, _, body = answer.partition(b"\r\n\r\n")
    problems = []
    if status_of(answer) not in case.statuses:
        problems.append(f"status {status_of(answer)}")
    if b"content-type: application/json" not in head.lower():
        problems.append("not JSON")
    if M.lower() in answer.lower():
        problems.append("echoes the request")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return [*problems, f"body {body[:80]!r}"]
    if case.dialect == "anthropic":
        shaped = doc.get("type") == "error" and set(doc["error"]) == {"type", "message"}
    else:
        shaped = set(doc.get("error", {})) == {"message", "type", "param", "code"}
    if not shaped:
        problems.append(f"not {case.dialect}'s shape: {doc}")
    return problems


def _assert_api_errors(answers: dict[str, bytes | None]) -> None:
    wrong = {name: _problems(CASES[name], answer) for name, answer in answers.items()}
    assert {name: problems for name, problems in wrong.items() if problems} == {}


async def test_refusals_are_api_errors_c_parser(pipeline: Pipeline) -> None:
    answers = await _probe(pipeline.proxy_url)
    _assert_api_errors(answers)
    assert pipeline.upstream.received == []
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{pipeline.proxy_url}/statsz") as response,
    ):
        stats = await response.json()
    # Every case but the three that reach routing was refused by the parser, and counted.
    assert stats["rejected_malformed"] == len(CASES) - 3


async def test_refusals_are_api_errors_pure_python_parser(
    pure_python_proxy: str, fake_upstream: FakeUpstream
) -> None:
    # The fixture also checks, at the end, that the marker reached no log line.
    _assert_api_errors(await _probe(pure_python_proxy))
    assert fake_upstream.received == []


async def test_absolute_form_is_refused_and_captured(pipeline: Pipeline) -> None:
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    answer = await raw_exchange(
        pipeline.proxy_url,
        b"POST http://" + M + b".example/v1/chat/completions HTTP/1.1\r\nHost: p\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body),
    )
    assert status_of(answer) == 400
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert M not in answer
    assert orjson.loads(payload)["error"]["type"] == "invalid_request_error"
    request_id = next(
        line.split(b":", 1)[1].strip().decode()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"x-logorhythms-request-id:")
    )
    assert pipeline.upstream.received == []
    row = await pipeline.exchange(request_id, "status, outcome, error_type, request_body")
    assert row == {
        "status": 400,
        "outcome": "rejected",
        "error_type": "absolute_form_target",
        "request_body": "",
    }


async def test_a_crashing_handler_is_a_500_in_the_api_shape(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in our code still answers in the API's shape, without a traceback to the client."""

    async def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug with " + M.decode())

    monkeypatch.setattr(pipeline.proxy_app[EXCHANGE_HANDLER], "handle", crash)
    answer = await raw_exchange(
        pipeline.proxy_url,
        b"POST /v1/messages HTTP/1.1\r\nHost: p\r\n" + ANTHROPIC + b"Content-Length: 2\r\n\r\n{}",
    )
    assert status_of(answer) == 500
    assert M not in answer
    doc = orjson.loads(answer.partition(b"\r\n\r\n")[2])
    assert doc["type"] == "error"
    assert doc["error"]["type"] == "api_error"


@pytest.mark.parametrize("method", [b"TRACE", b"PROPFIND"])
async def test_a_method_no_llm_api_uses_is_405_and_captured(
    pipeline: Pipeline, method: bytes
) -> None:
    """llhttp knows TRACE and WebDAV's methods; the passthrough route would have sent them on."""
    answer = await raw_exchange(
        pipeline.proxy_url, method + b" /v1/files?" + M + b" HTTP/1.1\r\nHost: p\r\n\r\n"
    )
    assert status_of(answer) == 405
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert M not in answer
    assert b"allow: delete, get, head, options, patch, post, put" in head.lower()
    assert orjson.loads(payload)["error"]["type"] == "invalid_request_error"
    request_id = next(
        line.split(b":", 1)[1].strip().decode()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"x-logorhythms-request-id:")
    )
    assert pipeline.upstream.received == []
    row = await pipeline.exchange(request_id, "status, outcome, error_type")
    assert row == {"status": 405, "outcome": "rejected", "error_type": "method_not_allowed"}
