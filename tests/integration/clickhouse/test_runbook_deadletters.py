"""The dead-letter reader in docs/OPERATIONS.md ("Records dead-lettered"), run as written on the
records a real loader dead-lettered."""

from __future__ import annotations

import asyncio
import re
import sys
import time
from pathlib import Path

from tests.integration.clickhouse.conftest import LoaderFactory, read_deadletters
from tests.integration.clickhouse.synthetic import produce

ROOT = Path(__file__).resolve().parents[3]


def _reader_snippet() -> str:
    text = (ROOT / "docs" / "OPERATIONS.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- deadletter-reader -->\n( *)```python\n(.*?)\n *```", text, re.DOTALL)
    assert found is not None, "docs/OPERATIONS.md lost its dead-letter reader"
    indent = len(found.group(1))
    return "\n".join(line[indent:] for line in found.group(2).splitlines()) + "\n"


async def test_the_runbook_prints_each_dead_letter_with_its_reason(
    kafka_bootstrap: str, topic: str, start_loader: LoaderFactory, tmp_path: Path
) -> None:
    garbage = [("k1", b"\x00garbage that is not avro"), ("k2", b"\xc3\x01" + b"\xff" * 12)]
    await produce(kafka_bootstrap, topic, garbage)
    loader = await start_loader()
    await loader.wait_records(len(garbage))
    assert len(await read_deadletters(kafka_bootstrap, topic, 2)) == 2

    script = tmp_path / "deadletters.py"
    script.write_text(_reader_snippet(), encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), f"{topic}.deadletter", kafka_bootstrap,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    started = time.monotonic()
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode(errors="replace")
    lines = stdout.decode().splitlines()
    assert len(lines) == 2, (lines, time.monotonic() - started)
    for line in lines:
        assert "'reason': 'undecodable" in line, line
        assert f"'source_topic': '{topic}'" in line, line
