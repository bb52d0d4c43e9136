"""The crash-test fault points are inert unless LOGORHYTHMS_FAULT_POINT names them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from consumers.faultpoint import ENV, fault_point

ROOT = Path(__file__).resolve().parents[3]


async def test_points_pass_straight_through_by_default() -> None:
    assert ENV not in os.environ
    async with asyncio.timeout(1):
        for name in ("before_insert", "mid_insert", "before_commit"):
            await fault_point(name)


def test_an_armed_point_announces_itself_and_holds() -> None:
    script = (
        "import asyncio\n"
        "from consumers.faultpoint import fault_point\n"
        "async def main():\n"
        "    await fault_point('before_insert')\n"  # not armed: passes
        "    await asyncio.wait_for(fault_point('mid_insert'), 0.5)\n"  # armed: holds
        "asyncio.run(main())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env={**os.environ, ENV: "mid_insert"},
        check=False,
    )
    assert result.stderr.startswith("FAULT-POINT mid_insert\n")
    assert "TimeoutError" in result.stderr  # it was still holding when the deadline came
