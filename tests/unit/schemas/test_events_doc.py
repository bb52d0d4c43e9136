"""docs/EVENTS.md names each schema's fingerprint; they must be the ones the codec writes."""

from __future__ import annotations

import re
from pathlib import Path

from schemas import Codec, EventType

EVENTS_DOC = Path(__file__).resolve().parents[3] / "docs" / "EVENTS.md"


def test_the_documented_fingerprints_are_the_codecs() -> None:
    rows = re.findall(
        r"^\| (\w+) \| `schemas/\w+\.avsc` \| `[\w.]+` \| `([0-9a-f]{16})` \|$",
        EVENTS_DOC.read_text(encoding="utf-8"),
        re.MULTILINE,
    )
    codec = Codec()
    assert dict(rows) == {t.value: codec.fingerprint(t).hex() for t in EventType}
