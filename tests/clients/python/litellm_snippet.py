"""The LiteLLM snippet of docs/CLIENTS.md, run as it is written there against the proxy at
argv[1] (its only change: that base URL for ``http://127.0.0.1:8080``).

Run in its own process by tests/integration/api/test_client_sdks.py: LiteLLM keeps its HTTP
clients for the life of the process, which the test's event loop must not inherit. Offline as
the page says: ``LITELLM_LOCAL_MODEL_COST_MAP=True`` before LiteLLM is imported.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

CLIENTS_MD = Path(__file__).resolve().parents[3] / "docs" / "CLIENTS.md"
DOCUMENTED_BASE = "http://127.0.0.1:8080"


def snippet() -> str:
    """The first Python block under the page's "Python: LiteLLM" heading."""
    page = CLIENTS_MD.read_text()
    section = page.split("## Python: LiteLLM\n", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    if found is None:
        raise SystemExit(f"no python block under 'Python: LiteLLM' in {CLIENTS_MD}")
    return found.group(1)


if __name__ == "__main__":
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    code = snippet().replace(DOCUMENTED_BASE, sys.argv[1])
    exec(compile(code, str(CLIENTS_MD), "exec"), {"__name__": "__main__"})  # noqa: S102 (the documentation's own snippet)
