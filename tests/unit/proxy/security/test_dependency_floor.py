"""S6: installed aiohttp carries the 2026 smuggling fixes, and pyproject pins that floor."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

FLOOR = (3, 13, 4)


def _release(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def test_installed_aiohttp_is_at_least_the_patched_floor() -> None:
    assert _release(version("aiohttp")) >= FLOOR


def test_pyproject_pins_the_aiohttp_floor() -> None:
    pyproject = Path(__file__).parents[4] / "pyproject.toml"
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    pins = [d for d in deps if re.match(r"aiohttp\b", d)]
    assert len(pins) == 1, pins
    match = re.search(r">=\s*([\d.]+)", pins[0])
    assert match is not None, f"aiohttp has no lower bound in pyproject: {pins[0]!r}"
    assert _release(match.group(1)) >= FLOOR
