"""Request bodies of each dialect as OpenAI-format conversations; shard names; the card."""

from __future__ import annotations

import orjson

from consumers.export.card import render, size_category
from consumers.export.conversations import IMAGE_PLACEHOLDER, messages_of
from consumers.export.records import user_agent_family
from consumers.export.shards import shard_name


def test_openai_tool_calls_and_results_and_the_answer() -> None:
    body = orjson.dumps(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather? "},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "c1", "type": "function",
                     "function": {"name": "w", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            ]
        }
    )  # fmt: skip
    out = messages_of(body, dialect="openai", answer="Sunny.", answer_tool_calls="",
                      keep_images=False)  # fmt: skip
    assert [m.role for m in out] == ["system", "user", "assistant", "tool", "assistant"]
    assert out[1].content == "Weather? " + IMAGE_PLACEHOLDER
    assert out[2].tool_calls[0]["function"]["name"] == "w"
    assert out[3].tool_call_id == "c1"
    assert out[4].content == "Sunny."
    kept = messages_of(body, dialect="openai", answer="", answer_tool_calls="", keep_images=True)
    assert kept[1].images == ["https://x/y.png"]
    assert kept[1].content == "Weather? "


def test_anthropic_blocks_become_openai_messages() -> None:
    body = orjson.dumps(
        {
            "system": "Be brief.",
            "messages": [
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "t1", "name": "w", "input": {"city": "Oslo"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "rain"}]},
            ],
        }
    )  # fmt: skip
    calls = orjson.dumps([{"id": "t2", "name": "w", "input": {"city": "Bergen"}}]).decode()
    out = messages_of(body, dialect="anthropic", answer="", answer_tool_calls=calls,
                      keep_images=False)  # fmt: skip
    assert [m.role for m in out] == ["system", "user", "assistant", "tool", "assistant"]
    assert out[2].tool_calls[0]["function"]["arguments"] == '{"city":"Oslo"}'
    assert (out[3].tool_call_id, out[3].content) == ("t1", "rain")
    assert out[4].tool_calls[0]["id"] == "t2"


def test_shard_names_follow_hugging_face() -> None:
    assert shard_name("train", 3, 12, "parquet") == "data/train-00003-of-00012.parquet"
    assert shard_name("test", 0, 1, "jsonl") == "data/test-00000-of-00001.jsonl.gz"


def test_user_agent_family_drops_versions() -> None:
    assert user_agent_family("OpenAI/Python 1.50.0") == "OpenAI/Python"
    assert user_agent_family("curl/8.5.0") == "curl"
    assert user_agent_family("Mozilla/5.0 (X11) Chrome/120.0 Safari/537.36") == "Chrome"
    assert user_agent_family("") == ""


def test_card_front_matter_comes_from_the_data() -> None:
    counts = {
        "exchanges_matched": 10, "exchanges_folded": 2, "conversations": 8,
        "exact_duplicates": 1, "near_duplicates": 1, "sampled_out": 0, "language_filtered": 0,
        "rows_by_split": {"train": 5, "test": 1}, "scrubbed": {"EMAIL": 3},
        "languages": {"en": 5, "unknown": 1}, "models": {"gpt-4o-mini": 6},
    }  # fmt: skip
    options = {"name": "Demo", "licence": "cc-by-4.0", "profile": "open", "recipient": "",
               "near_duplicate_threshold": 0.85, "sample": 1.0, "filter": {}}  # fmt: skip
    text = render(options=options, counts=counts,
                  files=["data/test-00000-of-00001.parquet"]).decode()  # fmt: skip
    front = text.split("---\n")[1]
    assert 'license: "cc-by-4.0"' in front
    assert 'language:\n- "en"\n' in front
    assert '  - split: train\n    path: "data/train-*.parquet"' in front
    assert "EMAIL 3" in text
    assert size_category(6) == "n<1K"
