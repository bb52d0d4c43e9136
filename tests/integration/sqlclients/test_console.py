"""The SQL console at /play, driven in headless Chromium as an analyst would use it.

The screenshot it takes is kept as a test artifact (LOGORHYTHMS_TEST_ARTIFACTS, default
`.artifacts/` at the repository root) so a person can look at what the page showed.
"""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.integration.sqlclients.conftest import NODE_DIR, Endpoint, require, run_tool, tool

ARTIFACTS = Path(
    os.environ.get("LOGORHYTHMS_TEST_ARTIFACTS", Path(__file__).resolve().parents[3] / ".artifacts")
)


@pytest.fixture
def screenshot() -> Path:
    require(NODE_DIR / "node_modules" / "playwright-core", "playwright-core (npm)")
    require(Path(os.environ.get("CHROMIUM", "/usr/bin/chromium")), "Chromium")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / "sql-console.png"
    path.unlink(missing_ok=True)
    return path


async def test_console_in_a_browser(endpoint: Endpoint, screenshot: Path) -> None:
    out = await run_tool(
        tool("node"), "console.mjs", f"{endpoint.url}/play", str(screenshot), cwd=NODE_DIR,
        timeout_s=180,
    )  # fmt: skip
    got = orjson.loads(out)
    # No script error and no CSP violation; the browser's own note on each refused query's
    # HTTP status (404 for the unknown table, 500 for the refusal) is expected.
    errors = [e for e in got["consoleErrors"] if not e.startswith("Failed to load resource")]
    assert errors == []
    assert len(got["consoleErrors"]) == 2
    assert len(got["examples"]) >= 20
    assert got["examples"][0] == "How many tokens did each model use per day?"
    assert got["table"]["error"] is None
    assert got["table"]["headers"] == ["n", "twice"]
    assert got["table"]["rows"] == [["0", "0"], ["1", "2"], ["2", "4"]]
    assert got["table"]["summary"].startswith("3 rows")
    # A query that names its own format is shown as the text ClickHouse wrote.
    assert got["ownFormat"]["text"] == "one\n1\n"
    assert got["unknownTable"]["error"].startswith("Code: 60. DB::Exception:")
    assert got["fileFunction"]["error"].startswith("Code: 497. DB::Exception:")
    assert got["download"] == {
        "name": "logorhythms-query.csv",
        "body": '"n","twice"\n0,"0"\n1,"2"\n2,"4"\n',
    }
    # One click runs the guide's first example over what was captured.
    assert got["example"]["error"] is None, got["example"]
    assert got["example"]["query"].startswith("SELECT toDate(received_at) AS day")
    assert got["example"]["headers"] == ["day", "model", "prompt", "completion", "estimated_rows"]
    assert screenshot.stat().st_size > 10_000  # noqa: ASYNC240 (after the browser is gone)


async def test_console_with_a_password(guarded_endpoint: Endpoint, screenshot: Path) -> None:
    # The page itself loads without credentials (it holds no data); its queries carry the user
    # and password typed into it.
    assert guarded_endpoint.user is not None
    assert guarded_endpoint.password is not None
    out = await run_tool(
        tool("node"), "console.mjs", f"{guarded_endpoint.url}/play", str(screenshot),
        guarded_endpoint.user, guarded_endpoint.password, cwd=NODE_DIR, timeout_s=180,
    )  # fmt: skip
    got = orjson.loads(out)
    assert got["table"]["rows"] == [["0", "0"], ["1", "2"], ["2", "4"]]
    assert got["download"]["body"].startswith('"n","twice"\n')
    assert got["example"]["error"] is None, got["example"]


async def test_console_page_is_locked_to_its_origin(endpoint: Endpoint) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{endpoint.url}/play") as response:
            assert response.status == 200
            csp = response.headers["Content-Security-Policy"]
            assert "default-src 'none'" in csp
            assert "frame-ancestors 'none'" in csp
            assert response.headers["X-Frame-Options"] == "DENY"
            assert "<textarea" in await response.text()
        # The page's own requests are same-origin; another site's page cannot use the endpoint.
        async with session.post(
            f"{endpoint.url}/", data="SELECT 1", headers={"Origin": "https://evil.example"}
        ) as response:
            assert response.status >= 400
            assert response.headers["X-ClickHouse-Exception-Code"] == "516"
        async with session.get(f"{endpoint.url}/play/../../etc/passwd") as response:
            assert response.status == 404
