"""The dataset card: README.md with Hugging Face's YAML front matter, written from the data.

Pure: everything in it comes from the export's arguments and counts, so it is as reproducible as
the shards. The front matter names the files per split (``configs``/``data_files``), the licence,
task categories, languages found and the size category; the body states the profile, what was
scrubbed (with counts per type), how duplicates were removed, and the fields.
"""

from __future__ import annotations

import json
from typing import Any

_SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
          (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"))  # fmt: skip
_FIELDS = (
    ("conversation_id", "id of the conversation, keyed for this export's recipient"),
    ("conversation_hash", "hash of the conversation's (scrubbed) text up to case and spacing"),
    ("split", "train or test, decided by the conversation hash"),
    ("timestamp", "when the last turn was received (UTC), at the profile's precision"),
    ("model_requested / model", "the model the client asked for / the provider said answered"),
    ("provider, endpoint", "where the request was routed, and which API endpoint"),
    ("turn", "number of user messages"),
    ("language", "ISO 639-1 code of the first user message (lingua), empty when unknown"),
    ("messages", "OpenAI chat format: role, content, name, tool_call_id, tool_calls, images"),
    ("temperature, top_p, max_tokens", "sampling parameters of the last request"),
    ("finish_reason, usage", "how the last answer ended; its token usage (estimated flagged)"),
    ("turn_timing", "per answer: captured, streamed, TTFT ms, offsets of every chunk (ms)"),
    ("hashed_ip, user_agent_family", "licensed profile: keyed IP hash, client without version"),
    ("client_ip, user_agent, request_id", "legal profile only: as captured"),
)


def size_category(rows: int) -> str:
    return next((name for limit, name in _SIZES if rows < limit), "n>10M")


def _yaml_list(values: list[str], indent: str = "") -> str:
    return "".join(f"{indent}- {json.dumps(v)}\n" for v in values)


def render(*, options: dict[str, Any], counts: dict[str, Any], files: list[str]) -> bytes:
    splits = sorted(counts["rows_by_split"])
    rows = sum(counts["rows_by_split"].values())
    languages = sorted(code for code in counts["languages"] if code != "unknown")
    ext = files[0].rsplit("/", 1)[1].split(".", 1)[1] if files else "parquet"
    front = "---\n"
    front += f"pretty_name: {json.dumps(options['name'])}\n"
    front += f"license: {json.dumps(options['licence'] or 'other')}\n"
    front += "task_categories:\n" + _yaml_list(["text-generation", "conversational"])
    if languages:
        front += "language:\n" + _yaml_list(languages)
    front += "size_categories:\n" + _yaml_list([size_category(rows)])
    front += "configs:\n- config_name: default\n  data_files:\n"
    for split in splits:
        front += f"  - split: {split}\n    path: {json.dumps(f'data/{split}-*.{ext}')}\n"
    front += "---\n\n"
    scrubbed = counts["scrubbed"]
    body = [
        f"# {options['name']}\n",
        f"{rows:,} conversations captured by Logorhythms, exported with the "
        f"`{options['profile']}` profile"
        + (f" for {options['recipient']}" if options["recipient"] else "")
        + (f" under the licence `{options['licence']}`" if options["licence"] else "")
        + ".\n",
        "## How it was made\n",
        f"- Exchanges matching the filter: {counts['exchanges_matched']:,}; folded into a longer "
        f"conversation (a chat resends its history): {counts['exchanges_folded']:,}.",
        f"- Conversations: {counts['conversations']:,}; exact duplicates removed: "
        f"{counts['exact_duplicates']:,}; near duplicates removed (MinHash LSH, threshold "
        f"{options['near_duplicate_threshold']}): {counts['near_duplicates']:,}.",
        f"- Sampled out: {counts['sampled_out']:,} (sample {options['sample']}); language "
        f"filter removed {counts['language_filtered']:,}.",
        "- Rows per split: "
        + ", ".join(f"{s} {counts['rows_by_split'][s]:,}" for s in splits)
        + ".",
        f"- Filter: `{json.dumps(options['filter'], sort_keys=True)}`.\n",
        "## Scrubbing\n",
        (
            "Personal data and secrets were replaced by typed placeholders, consistent within a "
            "conversation (`EMAIL_1`, `PHONE_1`, `CARD_1`, `IP_1`, `URL_1`, `SECRET_1`, "
            "`NAME_1`). Values replaced, by type: "
            + (", ".join(f"{k} {v:,}" for k, v in sorted(scrubbed.items())) or "none")
            + '. Names are found only after a cue ("my name is", "Dear", a sign-off); '
            "see docs/DATASETS.md for what is and is not detected.\n"
            if options["profile"] != "legal"
            else "None: the `legal` profile is the data exactly as captured.\n"
        ),
        "## Fields\n",
        "| field | meaning |\n| --- | --- |",
        *(f"| `{name}` | {meaning} |" for name, meaning in _FIELDS),
        "",
        "## Models\n",
        "| model | conversations |\n| --- | --- |",
        *(f"| `{model}` | {n:,} |" for model, n in counts["models"].items()),
        "",
    ]
    return (front + "\n".join(body) + "\n").encode()
