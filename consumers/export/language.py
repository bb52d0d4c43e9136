"""The language of a conversation, detected offline (lingua: its models ship in the wheel).

Detection reads the first user message only (capped), which decides the language for the
datasets we know (LMSYS-Chat and WildChat do the same) and keeps the cost bounded. Lingua is
limited to the languages that make up nearly all chat traffic; text it cannot place, or too short
to say, is ``""``.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from lingua import Language, LanguageDetectorBuilder

MAX_CHARS = 400
MIN_CHARS = 12
LANGUAGES = (
    "ENGLISH", "CHINESE", "SPANISH", "FRENCH", "GERMAN", "PORTUGUESE", "RUSSIAN", "JAPANESE",
    "KOREAN", "ITALIAN", "DUTCH", "POLISH", "TURKISH", "ARABIC", "VIETNAMESE", "INDONESIAN",
    "UKRAINIAN", "PERSIAN", "HINDI", "SWEDISH",
)  # fmt: skip


@cache
def _detector() -> Any:
    languages = [getattr(Language, name) for name in LANGUAGES]
    return LanguageDetectorBuilder.from_languages(*languages).build()


def detect(text: str) -> str:
    """ISO 639-1 code (``en``, ``zh``), or ``""`` when unknown."""
    text = text[:MAX_CHARS]
    if len(text.strip()) < MIN_CHARS:
        return ""
    found = _detector().detect_language_of(text)
    return "" if found is None else str(found.iso_code_639_1.name.lower())


def detect_many(texts: list[str]) -> list[str]:
    """``detect`` for many texts, in parallel on lingua's own threads; each distinct text once
    (chat traffic repeats its first messages: greetings, test prompts, templates)."""
    capped = [t[:MAX_CHARS] for t in texts]
    distinct = list(dict.fromkeys(t for t in capped if len(t.strip()) >= MIN_CHARS))
    found = _detector().detect_languages_in_parallel_of(distinct)
    codes = {
        text: "" if language is None else str(language.iso_code_639_1.name.lower())
        for text, language in zip(distinct, found, strict=True)
    }
    return [codes.get(t, "") for t in capped]
