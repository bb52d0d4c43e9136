"""The third-party decoder in docs/EVENTS.md, run as written on records read from a real topic,
and the headers every record carries (no tracing)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from schemas import Codec, EventType
from tests.integration.conftest import Pipeline

ROOT = Path(__file__).resolve().parents[2]


def _decoder_snippet() -> str:
    text = (ROOT / "docs" / "EVENTS.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- decoder -->\n```python\n(.*?)```", text, re.DOTALL)
    assert found is not None, "docs/EVENTS.md lost its decoder snippet"
    return found.group(1)


async def test_the_documented_decoder_reads_every_record_and_headers_name_them(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with aiohttp.ClientSession() as http:
        for stream in (False, True):
            body = {
                "model": "gpt-4o",
                "stream": stream,
                "messages": [{"role": "user", "content": "hi"}],
            }
            async with http.post(
                f"{pipeline.proxy_url}/v1/chat/completions", json=body
            ) as response:
                assert response.status == 200
                await response.read()
    # Each exchange: request, one chunk or more, completed.
    records = await pipeline.records(6)
    namespace: dict[str, Any] = {}
    monkeypatch.chdir(ROOT)  # the snippet reads schemas/ from the working directory
    exec(compile(_decoder_snippet(), "docs/EVENTS.md", "exec"), namespace)  # noqa: S102
    codec = Codec()
    seen = set()
    for record in records:
        headers = dict(record.headers)
        event_type = EventType(headers["logorhythms.event"].decode())
        assert headers["logorhythms.schema"].decode() == record.value[2:10].hex()
        assert headers["logorhythms.schema"] == codec.fingerprint(event_type).hex().encode()
        decoded = namespace["decode"](record.value)
        assert decoded == codec.decode(record.value).record  # what our own consumers read
        assert decoded["request_id"] == record.key.decode()
        seen.add(event_type)
    assert seen == set(EventType)
