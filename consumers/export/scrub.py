"""Personal data and secrets in captured text, replaced by typed placeholders.

Pure and I/O-free. One ``Scrubber`` per conversation: the same value gets the same placeholder
everywhere in it (``EMAIL_1`` in the third turn is the ``EMAIL_1`` of the first), different values
get different numbers, and nothing links placeholders across conversations.

What is detected (docs/DATASETS.md has the full list and what is not):

- ``EMAIL``: addresses ``local@domain.tld``.
- ``PHONE``: 9 to 15 digits in groups (``+44 20 7946 0958``, ``(415) 555-0134``, ``555.013.4567``),
  or 7+ digits after a ``+``; dates and version numbers are not phones.
- ``CARD``: 13 to 19 digits (spaces or dashes allowed) that pass the Luhn check.
- ``IP``: IPv4 and IPv6 addresses that parse as such.
- ``URL``: URLs that carry a query string, a fragment with parameters or credentials
  (``user:pass@``); a plain link (``https://example.com/docs``) stays.
- ``SECRET``: every provider key shape the proxy fingerprints (``schemas.keyshapes``), the proxy's
  own fingerprints (``fp:…``, which would link a person's exchanges), a value after ``password``
  and friends, and long random-looking tokens (24+ characters, letters and digits, Shannon entropy
  at least 4 bits per character).
- ``NAME``: names introduced by a cue (``my name is``, ``call me``, ``Dear``, ``Mr``/``Ms``/``Dr``,
  a sign-off line); once found, every later mention of the name or its parts in the conversation.
  There is no statistical recogniser (no spaCy model can be installed offline), so a name
  mentioned without such a cue is not found.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter

from schemas.keyshapes import shaped_spans

KINDS = ("EMAIL", "PHONE", "CARD", "IP", "URL", "SECRET", "NAME")

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_URL = re.compile(r"\b(?:https?|ftp|wss?)://[^\s<>\"'`)\]]+", re.IGNORECASE)
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.]*\d)")
_IPV6 = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,5}(?:[ .-]\d{2,5}){1,4}(?![\w-])"
    r"|(?<![\w+])\+\d{7,15}(?!\w)"
)
_DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")
_FINGERPRINT = re.compile(r"\bfp:[0-9a-f]{16,64}\b")
_PASSWORD = re.compile(
    r"(?i)\b(?:password|passwd|pwd|passphrase|pass code|passcode|pin)\b\s*(?:[:=]|is)\s*"
    r"[\"']?([^\s\"',;]{4,})"
)
_TOKEN = re.compile(r"(?<![A-Za-z0-9+/_=-])[A-Za-z0-9+/_=-]{24,}(?![A-Za-z0-9+/_=-])")
_NAME_WORD = r"[A-Z][a-z]+(?:[-'][A-Z][a-z]+)?"
_NAME = rf"[ \t]*(?P<name>{_NAME_WORD}(?:[ \t]+{_NAME_WORD}){{0,2}})"
# A cue in running text. The pattern starts with a bare character class so the regex engine skips
# ahead to candidate letters instead of trying every alternative at every position (5x faster);
# the lookbehinds put back the word boundary before the cue and pick the cue for its letter.
_NAME_CUES = re.compile(
    r"[MmCcNnDdPpSs](?<!\w.)"
    r"(?:(?<=[Mm])(?:y name is|y name's|rs?\.?|s\.?)|(?<=[Cc])all me|(?<=[Nn])ame:"
    r"|(?<=[Dd])(?:ear|r\.?)|(?<=[Pp])rof\.?|(?<=[Ss])igned,?)" + _NAME
)
# A sign-off line followed by the name on the next line (so only in texts with a newline).
_NAME_SIGN_OFF = re.compile(
    r"(?:^|\n)\s*(?:[Rr]egards|[Bb]est regards|[Kk]ind regards|[Ss]incerely|[Tt]hanks|[Cc]heers"
    r"|[Bb]est),?\s*\n\s*" + _NAME
)
# Capitalised words a cue can precede that are not names ("Dear Sir", "Best Practices").
_NOT_NAMES = frozenset(
    {
        "Sir", "Madam", "Team", "All", "Everyone", "Customer", "User", "Hiring", "Manager",
        "Friend", "Friends", "Colleagues", "Support", "Practices", "Regards", "Wishes", "The",
    }
)  # fmt: skip
# Overlapping findings: the first kind in this order wins (a card number is not also a phone).
_PRIORITY = {kind: i for i, kind in enumerate(("SECRET", "URL", "EMAIL", "CARD", "IP", "PHONE"))}
_MIN_ENTROPY_BITS = 4.0
_DIGIT = re.compile(r"\d")
_LETTER = re.compile(r"[A-Za-z]")
_DIGIT_DOT_DIGIT = re.compile(r"\d\.\d")


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every payment card number carries."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if i % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def entropy_bits(token: str) -> float:
    """Shannon entropy per character: random keys score above 4, words and hex ids below."""
    counts = Counter(token)
    size = len(token)
    return -sum(c / size * math.log2(c / size) for c in counts.values())


class Scrubber:
    """Scrubs the texts of one conversation; ``counts`` says how many values of each kind."""

    __slots__ = ("_name_pattern", "_names", "_placeholders", "counts")

    def __init__(self) -> None:
        self._placeholders: dict[tuple[str, str], str] = {}
        self._names: dict[str, str] = {}  # a found name (and each of its words) → placeholder
        self._name_pattern: re.Pattern[str] | None = None
        self.counts: Counter[str] = Counter()

    def _placeholder(self, kind: str, value: str) -> str:
        key = (kind, value)
        found = self._placeholders.get(key)
        if found is None:
            self.counts[kind] += 1
            found = f"{kind}_{self.counts[kind]}"
            self._placeholders[key] = found
        return found

    def scrub(self, text: str) -> str:
        if not text:
            return text
        spans = _findings(text)
        for name in _cued_names(text):
            self._learn_name(name)
        if spans:
            out: list[str] = []
            last = 0
            for start, end, kind in spans:
                out.append(text[last:start])
                out.append(self._placeholder(kind, text[start:end]))
                last = end
            out.append(text[last:])
            text = "".join(out)
        if self._names:
            text = self._replace_names(text)
        return text

    def _learn_name(self, name: str) -> None:
        words = [w for w in name.split() if w not in _NOT_NAMES]
        if not words or name.split()[0] in _NOT_NAMES:
            return
        full = " ".join(words)
        self._name_pattern = None
        # Every word already part of one known name ("Jonathan Baker" after "Mr Jonathan
        # Baker"): the same person.
        known = {self._names.get(word) for word in words}
        placeholder = self._names.get(full) or (
            known.pop() if len(known) == 1 and None not in known else None
        )
        if placeholder is None:
            placeholder = self._placeholder("NAME", full)
        self._names[full] = placeholder
        for word in words:
            self._names.setdefault(word, placeholder)

    def _replace_names(self, text: str) -> str:
        if self._name_pattern is None:
            # Longest first, so "Alice Smith" is one NAME_1 and not "NAME_1 NAME_1".
            names = sorted(self._names, key=len, reverse=True)
            alternatives = "|".join(re.escape(n) for n in names)
            self._name_pattern = re.compile(r"\b(?:" + alternatives + r")\b")
        return self._name_pattern.sub(lambda m: self._names[m.group(0)], text)


def _cued_names(text: str) -> list[str]:
    """The name after every cue, in order; a match starting inside another is found too."""
    found: list[tuple[int, str]] = []
    for pattern in (_NAME_CUES, _NAME_SIGN_OFF) if "\n" in text else (_NAME_CUES,):
        match = pattern.search(text)
        while match is not None:
            found.append((match.start(), match.group("name")))
            match = pattern.search(text, match.start() + 1)
    return [name for _, name in sorted(found)]


def _findings(text: str) -> list[tuple[int, int, str]]:
    """(start, end, kind) of every value to replace, in order, without overlaps."""
    found: list[tuple[int, int, str]] = []
    if "@" in text:
        found += [(m.start(), m.end(), "EMAIL") for m in _EMAIL.finditer(text)]
    if "://" in text:
        for m in _URL.finditer(text):
            if _url_carries_token(m.group(0)):
                found.append((m.start(), m.end(), "URL"))
    found += _secrets(text)
    if _DIGIT.search(text):
        found += _numbers(text)
    if ":" in text:
        for m in _IPV6.finditer(text):
            if m.group(0).count(":") >= 2 and _is_ip(m.group(0)) and ":" in m.group(0).strip(":"):
                found.append((m.start(), m.end(), "IP"))
    if not found:
        return found
    found.sort(key=lambda f: (f[0], _PRIORITY.get(f[2], 9), -f[1]))
    kept: list[tuple[int, int, str]] = []
    for start, end, kind in found:
        if kept and start < kept[-1][1]:
            if _PRIORITY.get(kind, 9) < _PRIORITY.get(kept[-1][2], 9) and end >= kept[-1][1]:
                kept[-1] = (kept[-1][0], end, kind)
            continue
        kept.append((start, end, kind))
    return kept


def _secrets(text: str) -> list[tuple[int, int, str]]:
    found: list[tuple[int, int, str]] = []
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) == len(text):  # ASCII: byte offsets are character offsets
        found += [(s, e, "SECRET") for s, e in shaped_spans(raw)]
    else:
        for s, e in shaped_spans(raw):
            start = len(raw[:s].decode("utf-8", "replace"))
            found.append((start, start + len(raw[s:e].decode("utf-8", "replace")), "SECRET"))
    if "fp:" in text:
        found += [(m.start(), m.end(), "SECRET") for m in _FINGERPRINT.finditer(text)]
    # _PASSWORD's words pre-checked, on ASCII text only: its case-insensitive match also takes
    # letters such as the long s (U+017F) and the dotless i (U+0131) that lower() leaves alone.
    lowered = text.lower()
    if not text.isascii() or "pass" in lowered or "pwd" in lowered or "pin" in lowered:
        found += [(m.start(1), m.end(1), "SECRET") for m in _PASSWORD.finditer(text)]
    for m in _TOKEN.finditer(text):
        token = m.group(0)
        if (
            _DIGIT.search(token)
            and _LETTER.search(token)
            and entropy_bits(token) >= _MIN_ENTROPY_BITS
        ):
            found.append((m.start(), m.end(), "SECRET"))
    return found


def _numbers(text: str) -> list[tuple[int, int, str]]:
    found: list[tuple[int, int, str]] = []
    for m in _CARD.finditer(text):
        digits = m.group(0).replace(" ", "").replace("-", "")
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            found.append((m.start(), m.end(), "CARD"))
    if _DIGIT_DOT_DIGIT.search(text):  # cheap: _IPV4's look-behind runs at every position
        found += [(m.start(), m.end(), "IP") for m in _IPV4.finditer(text) if _is_ip(m.group(0))]
    for m in _PHONE.finditer(text):
        value = m.group(0)
        count = sum(c.isdigit() for c in value)
        if _DATE.fullmatch(value) or not (
            9 <= count <= 15 or (value.startswith("+") and 7 <= count <= 15)
        ):
            continue
        if value.count(".") >= 2 and not value.startswith("+") and _is_ip(value):
            continue
        found.append((m.start(), m.end(), "PHONE"))
    return found


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _url_carries_token(url: str) -> bool:
    """A URL with credentials or parameters: the part that identifies someone or lets one in."""
    rest = url.split("://", 1)[1]
    host = rest.split("/", 1)[0]
    return "@" in host or "?" in rest or ("#" in rest and "=" in rest.split("#", 1)[1])
