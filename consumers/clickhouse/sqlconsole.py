"""The SQL console: a small page at ``/play`` for analysts without a ClickHouse client.

The page is static (``console/``): it sends queries to the endpoint's own ClickHouse HTTP
interface from the same origin, so it has no more reach than any other client of the endpoint.
It is served with a Content-Security-Policy that allows only same-origin scripts, styles and
requests, and may not be framed, so a page elsewhere can neither drive it nor read it.

The example queries are those of docs/ANALYSTS.md, copied into ``console/examples.json`` by
``python -m consumers.clickhouse.sqlconsole docs/ANALYSTS.md`` (a test keeps the two equal).
"""

from __future__ import annotations

import re
import sys
from importlib import resources
from typing import Final

import orjson
from aiohttp import web

_FILES: Final = {
    "index.html": "text/html",
    "console.js": "text/javascript",
    "console.css": "text/css",
    "examples.json": "application/json",
}
_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' blob: data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
# "### 7. Which exchanges had the longest prompts?" followed by a ```sql block.
EXAMPLE_PATTERN: Final = re.compile(
    r"^### (\d+)\. (.+?)\n\n```sql\n(.*?)```", re.MULTILINE | re.DOTALL
)


def examples_from_markdown(text: str) -> list[dict[str, object]]:
    """The numbered example queries of the analysts' guide, in order."""
    return [
        {"number": int(number), "title": title.strip(), "sql": sql.strip()}
        for number, title, sql in EXAMPLE_PATTERN.findall(text)
    ]


def _read(name: str) -> bytes:
    return resources.files("consumers.clickhouse").joinpath("console", name).read_bytes()


def add_console_routes(app: web.Application) -> None:
    """Serve the console under ``/play`` (the path ClickHouse's own server uses for its page)."""
    bodies = {name: _read(name) for name in _FILES}

    async def page(request: web.Request) -> web.Response:
        name = request.match_info.get("name") or "index.html"
        if name not in bodies:
            raise web.HTTPNotFound(text="no such console file\n")
        return web.Response(body=bodies[name], content_type=_FILES[name], headers=_HEADERS)

    app.router.add_get("/play", page)
    app.router.add_get("/play/", page)
    app.router.add_get("/play/{name}", page)


def main(argv: list[str]) -> int:
    """Copy the analysts' guide's examples into the console (run after editing the guide)."""
    if len(argv) != 1:
        print("usage: python -m consumers.clickhouse.sqlconsole docs/ANALYSTS.md", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as doc:
        examples = examples_from_markdown(doc.read())
    target = resources.files("consumers.clickhouse").joinpath("console", "examples.json")
    with resources.as_file(target) as path:
        path.write_bytes(orjson.dumps(examples, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"wrote {len(examples)} examples to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
