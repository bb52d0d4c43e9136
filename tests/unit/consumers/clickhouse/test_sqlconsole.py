"""The SQL console's example list is the analysts' guide's, and its files are what it serves."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import orjson

from consumers.clickhouse.sqlconsole import examples_from_markdown

GUIDE = Path(__file__).resolve().parents[4] / "docs" / "ANALYSTS.md"
CONSOLE = resources.files("consumers.clickhouse").joinpath("console")


def test_console_examples_equal_the_guides() -> None:
    shipped = orjson.loads(CONSOLE.joinpath("examples.json").read_bytes())
    assert shipped == examples_from_markdown(GUIDE.read_text(encoding="utf-8")), (
        "docs/ANALYSTS.md changed: run `python -m consumers.clickhouse.sqlconsole "
        "docs/ANALYSTS.md` to copy its examples into the console"
    )
    assert [e["number"] for e in shipped] == list(range(1, len(shipped) + 1))


def test_examples_parse_title_and_sql() -> None:
    text = "intro\n\n### 3. Who calls?\n\n```sql\nSELECT 1\nFROM t\n```\n\n### x. not one\n"
    assert examples_from_markdown(text) == [
        {"number": 3, "title": "Who calls?", "sql": "SELECT 1\nFROM t"}
    ]


def test_page_loads_nothing_from_elsewhere() -> None:
    # The page's CSP allows only same-origin resources; an external URL would break it silently.
    for name in ("index.html", "console.js", "console.css"):
        text = CONSOLE.joinpath(name).read_text(encoding="utf-8")
        assert "http://" not in text
        assert "https://" not in text, name
