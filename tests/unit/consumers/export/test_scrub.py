"""The scrubber on a planted corpus: every planted value replaced, prose left alone."""

from __future__ import annotations

import pytest

from consumers.export.scrub import Scrubber, luhn_valid
from tests.key_shapes import SHAPED

PLANTED = [
    ("EMAIL", "write to jane.doe+work@mail.example.org today"),
    ("PHONE", "call +1 (415) 555-0134 after six"),
    ("PHONE", "my number is 020 7946 0958"),
    ("PHONE", "reach me at +4915123456789"),
    ("CARD", "card 4111-1111-1111-1111 please"),
    ("CARD", "amex 378282246310005 exp 12/29"),
    ("IP", "the host 198.51.100.23 is down"),
    ("IP", "ipv6 2001:db8:85a3::8a2e:370:7334 too"),
    ("URL", "open https://u:p@db.example.com/x now"),
    ("URL", "see https://example.com/reset?token=abc123&user=9"),
    ("SECRET", "the old key fp:0123456789abcdef01234567 leaked"),
    ("SECRET", "password is Tr0ub4dor&3xyz"),
    ("SECRET", "use Zx8Kq2LmN4pR7sT1vW3yA5bC9dE0fG here"),
    ("NAME", "Hello, my name is Maria Garcia."),
    ("NAME", "Dear Mr Jonathan Baker, thanks"),
    ("NAME", "Kind regards,\nPriya Raman"),
]


@pytest.mark.parametrize(("kind", "text"), PLANTED)
def test_each_planted_value_is_replaced_by_its_type(kind: str, text: str) -> None:
    scrubber = Scrubber()
    out = scrubber.scrub(text)
    assert f"{kind}_1" in out
    assert scrubber.counts[kind] == 1


@pytest.mark.parametrize("key", SHAPED.values())
def test_every_key_shape_the_proxy_knows_is_a_secret(key: str) -> None:
    out = Scrubber().scrub(f"my key: {key} thanks")
    assert key not in out
    assert "SECRET_1" in out


@pytest.mark.parametrize(
    "text",
    [
        "Version 1.2.3 was released on 2024-05-17 at 12:30:45.",
        "It costs 1,299.00 and weighs 12.5 kg; order 42 of 1000.",
        "See https://docs.python.org/3/library/re.html for details.",
        "commit 9fceb02d0ae598e95dc970b74767f19372d61af8 fixed it",
        "uuid 123e4567-e89b-12d3-a456-426614174000 in the log",
        "Dear Sir or Madam, the Best Practices guide says hi.",
        "def sort_numbers(values: list[int]) -> list[int]: return sorted(values)",
    ],
)
def test_prose_code_and_ids_are_left_alone(text: str) -> None:
    assert Scrubber().scrub(text) == text


def test_placeholders_are_consistent_within_a_conversation_and_numbered_per_value() -> None:
    scrubber = Scrubber()
    first = scrubber.scrub("I am reachable at a@example.com or b@example.com. My name is Ann Lee.")
    second = scrubber.scrub("Again: b@example.com. Ann says hi, Lee too.")
    assert first == "I am reachable at EMAIL_1 or EMAIL_2. My name is NAME_1."
    assert second == "Again: EMAIL_2. NAME_1 says hi, NAME_1 too."
    assert Scrubber().scrub("b@example.com") == "EMAIL_1"  # a new conversation starts over


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    assert Scrubber().scrub("order 4111 1111 1111 1112") == "order 4111 1111 1111 1112"
