"""What the client asked for, read from the raw request body: every field of ``ParsedRequest``,
for each dialect and for bodies that are not what they claim to be."""

from __future__ import annotations

import orjson
import pytest

from consumers.exchange.request import ParsedRequest, parse_request


def body(doc: object) -> bytes:
    return orjson.dumps(doc)


def test_openai_chat_request_every_field() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"b": 1, "a": 2}}}]
    parsed = parse_request(
        body({
            "model": "gpt-4o", "stream": True, "temperature": 0.2, "top_p": 1, "max_tokens": 64,
            "n": 2, "response_format": {"type": "json_object"}, "tools": tools,
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
            ],
        }),
        dialect="openai",
    )  # fmt: skip
    assert parsed == ParsedRequest(
        json_valid=True,
        utf8_valid=True,
        system_prompt="be brief",
        messages=[("system", "be brief"), ("user", "hi"), ("assistant", "hello")],
        tools_json=orjson.dumps(tools, option=orjson.OPT_SORT_KEYS).decode(),
        tools_count=1,
        temperature=0.2,
        top_p=1.0,
        max_tokens=64,
        n=2,
        response_format="json_object",
        params={
            "model": "gpt-4o", "stream": True, "temperature": 0.2, "top_p": 1, "max_tokens": 64,
            "n": 2, "response_format": {"type": "json_object"},
        },
    )  # fmt: skip
    assert isinstance(parsed.top_p, float)
    assert '"a":2,"b":1' in parsed.tools_json  # keys sorted, so equal tools compare equal


def test_anthropic_system_is_top_level_and_content_blocks_are_joined() -> None:
    parsed = parse_request(
        body({
            "model": "claude-sonnet-4", "max_tokens": 1024,
            "system": [{"type": "text", "text": "You are "}, {"type": "text", "text": "terse."}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "what is "},
                    {"type": "image", "source": {"type": "base64", "data": "AAAA"}},
                    {"type": "text", "text": "this?"},
                ]},
            ],
        }),
        dialect="anthropic",
    )  # fmt: skip
    assert parsed.system_prompt == "You are terse."
    assert parsed.messages == [("user", "what is [image]this?")]
    assert parsed.max_tokens == 1024
    assert parsed.params == {"model": "claude-sonnet-4", "max_tokens": 1024}


def test_a_system_member_is_not_the_system_prompt_outside_anthropic() -> None:
    parsed = parse_request(body({"system": "ignored", "messages": []}), dialect="openai")
    assert parsed.system_prompt == ""
    assert parsed.messages == []


def test_developer_messages_and_responses_instructions_are_system_text() -> None:
    parsed = parse_request(
        body({
            "instructions": "answer in French",
            "input": [
                {"role": "developer", "content": [{"type": "input_text", "text": "no lists"}]},
                {"role": "user", "content": [
                    {"type": "input_text", "text": "hi"}, {"type": "input_image", "url": "x"},
                ]},
            ],
            "max_output_tokens": 50,
        }),
        dialect="openai",
    )  # fmt: skip
    assert parsed.system_prompt == "answer in French\nno lists"
    assert parsed.messages == [("developer", "no lists"), ("user", "hi[image]")]
    assert parsed.max_tokens == 50
    assert parsed.params == {"max_output_tokens": 50}  # content keys are not parameters


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"prompt": "complete me"}, [("user", "complete me")]),  # legacy completions
        ({"input": "embed me"}, [("user", "embed me")]),  # embeddings, responses with a string
        ({"prompt": ["a", "b"]}, []),  # a list prompt is not text
    ],
)
def test_string_prompts_and_inputs_are_one_user_message(
    doc: dict[str, object], expected: list[tuple[str, str]]
) -> None:
    assert parse_request(body(doc), dialect="openai").messages == expected


def test_max_tokens_falls_back_to_the_newer_names_in_order() -> None:
    assert parse_request(body({"max_completion_tokens": 9}), dialect="openai").max_tokens == 9
    both = {"max_tokens": 1, "max_completion_tokens": 2, "max_output_tokens": 3}
    assert parse_request(body(both), dialect="openai").max_tokens == 1
    assert parse_request(body({"max_output_tokens": 3}), dialect="openai").max_tokens == 3


@pytest.mark.parametrize("value", [True, "0.5", None, [1], {"x": 1}])
def test_numbers_of_the_wrong_type_are_dropped(value: object) -> None:
    doc = {"temperature": value, "top_p": value, "max_tokens": value, "n": value}
    parsed = parse_request(body(doc), dialect="openai")
    assert (parsed.temperature, parsed.top_p, parsed.max_tokens, parsed.n) == (None,) * 4
    assert parsed.json_valid
    assert parsed.params == doc  # kept as sent, for analysts


def test_a_float_token_limit_is_not_an_int() -> None:
    parsed = parse_request(body({"max_tokens": 1.5, "n": 2.0, "temperature": 1}), dialect="openai")
    assert parsed.max_tokens is None
    assert parsed.n is None
    assert parsed.temperature == 1.0


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [("json", "json"), ({"type": "json_schema", "json_schema": {}}, "json_schema"),
     ({"type": 3}, None), ({}, None), (7, None)],
)  # fmt: skip
def test_response_format_is_its_type(fmt: object, expected: str | None) -> None:
    assert parse_request(body({"response_format": fmt}), dialect="openai").response_format == (
        expected
    )


def test_tools_that_are_not_a_list_are_not_counted() -> None:
    parsed = parse_request(body({"tools": {"type": "function"}}), dialect="openai")
    assert (parsed.tools_count, parsed.tools_json) == (0, "")


def test_malformed_messages_are_skipped_or_kept_without_role() -> None:
    parsed = parse_request(
        body({"messages": ["text", None, {"content": "no role"}, {"role": 5, "content": 7},
                           {"role": "user", "content": ["a", {"text": "b"}, {"type": "audio"}]}]}),
        dialect="openai",
    )  # fmt: skip
    assert parsed.messages == [("", "no role"), ("", ""), ("user", "ab")]


def test_messages_that_are_not_a_list_give_none() -> None:
    parsed = parse_request(body({"messages": "hi"}), dialect="openai")
    assert parsed.messages == []
    assert parsed.json_valid


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b'{"a": 1} trailing'])
def test_invalid_json_gives_an_empty_request(raw: bytes) -> None:
    parsed = parse_request(raw, dialect="openai")
    assert parsed == ParsedRequest(json_valid=False, utf8_valid=True)


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"text"', b"3", b"null"])
def test_json_that_is_not_an_object_is_not_a_request(raw: bytes) -> None:
    assert parse_request(raw, dialect="openai") == ParsedRequest(json_valid=False)


def test_invalid_utf8_is_flagged_and_nothing_is_parsed() -> None:
    parsed = parse_request(b'{"model": "\xff"}', dialect="openai")
    assert parsed.utf8_valid is False
    assert parsed.json_valid is False  # orjson refuses invalid UTF-8 too
    assert parsed.params == {}


def test_binary_body_is_neither_utf8_nor_json() -> None:
    parsed = parse_request(bytes(range(256)), dialect="anthropic")
    assert (parsed.utf8_valid, parsed.json_valid) == (False, False)
