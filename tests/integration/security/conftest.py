"""Fixtures shared by the security tests."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.integration.conftest import SERVICE_KEY, FakeUpstream

# Planted in hostile requests: it must come back in no answer and reach no log.
ATTACKER_MARKER = b"ATTACKER-7f3e91"


@pytest.fixture(scope="module")
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def pure_python_proxy(
    kafka_bootstrap: str,
    unique_topic: str,
    fake_upstream: FakeUpstream,
    free_port: int,
    tmp_path: Path,
) -> AsyncIterator[str]:
    """The proxy in a subprocess whose aiohttp runs without its C extensions."""
    env = {
        **os.environ,
        "AIOHTTP_NO_EXTENSIONS": "1",
        "OPENAI_BASE_URL": f"{fake_upstream.url}/v1",
        "OPENAI_API_KEY": SERVICE_KEY,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "LOGORHYTHMS_TOPIC": unique_topic,
        "LOGORHYTHMS_PORT": str(free_port),
        "LOGORHYTHMS_JOURNAL_DIR": str(tmp_path / "journal"),
    }
    process = subprocess.Popen(  # noqa: ASYNC220 -- started once, read in a thread
        [sys.executable, "-m", "deploy.cli", "proxy"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{free_port}"
    try:
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(f"{url}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"proxy subprocess did not start: {process.stderr!r}")
                    await asyncio.sleep(0.1)
        yield url
    finally:
        process.terminate()
        _, stderr = await asyncio.to_thread(process.communicate, timeout=30)
        # Refused requests are not logged with their bytes (nor with tracebacks).
        for marker in (b"Traceback", b"a\\x00b", b"xchunked", ATTACKER_MARKER):
            assert marker not in stderr, stderr.decode(errors="replace")
