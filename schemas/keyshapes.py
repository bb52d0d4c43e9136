"""Values that are credentials whatever they are called: provider and platform key formats.

Pure and I/O-free. The proxy fingerprints every such value before an event is built
(``proxy.credentials``, ``proxy.redaction``); the dataset exports look for the same shapes in
what was captured, in case one slipped through in a form the proxy could not see (a key split
across chunks, pasted with a typo in its prefix), so both read them from here.
"""

from __future__ import annotations

import re

# Each shape starts at a word boundary (not inside a longer token) and needs enough random
# characters that prose ("task-management", "sk-learn") does not match; generic ``sk-`` needs
# a digit as well.
VALUE_SHAPES = (
    rb"sk-(?=[A-Za-z0-9_-]*[0-9])[A-Za-z0-9_-]{16,}",  # OpenAI sk-/sk-proj-, Anthropic sk-ant-, ...
    rb"[rs]k_(?:live|test)_[A-Za-z0-9]{16,}",  # Stripe secret and restricted keys
    rb"A(?:KIA|SIA)[A-Z0-9]{16}",  # AWS access key ids (long-lived and STS)
    rb"gh[pousr]_[A-Za-z0-9]{20,}",  # GitHub tokens
    rb"github_pat_[A-Za-z0-9_]{20,}",  # GitHub fine-grained tokens
    rb"gsk_[A-Za-z0-9]{20,}",  # Groq
    rb"xai-[A-Za-z0-9]{20,}",  # xAI
    rb"AIza[A-Za-z0-9_-]{30,}",  # Google API keys
    rb"ya29\.[A-Za-z0-9_-]{20,}",  # Google OAuth access tokens
    rb"hf_[A-Za-z0-9]{20,}",  # Hugging Face
    rb"glpat-[A-Za-z0-9_-]{20,}",  # GitLab
    rb"xox[abposre]-[A-Za-z0-9-]{10,}",  # Slack
    rb"pplx-[A-Za-z0-9]{20,}",  # Perplexity
    rb"r8_[A-Za-z0-9]{20,}",  # Replicate
    rb"npm_[A-Za-z0-9]{30,}",  # npm
    rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*",  # JWT (header.payload.sig)
)
# The scan looks only at runs of at least this many token characters (letters, digits, ``_.-``):
# every shape above is longer, and prose words are shorter, so most text is skipped by one
# ``bytes.translate`` and a ``find`` (both in C) without a regex being tried.
MIN_RUN = 16
_TOKEN_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_RUNS = bytes(0x61 if i in _TOKEN_CHARS else 0x20 for i in range(256))  # token: "a", else " "
_RUN = b"a" * MIN_RUN
# The first three bytes of every shape: a run starting otherwise is not matched against them.
_STARTS = frozenset(
    {
        b"sk-", b"sk_", b"rk_", b"AKI", b"ASI", b"ghp", b"gho", b"ghu", b"ghs", b"ghr", b"git",
        b"gsk", b"xai", b"AIz", b"ya2", b"hf_", b"glp", b"xox", b"ppl", b"r8_", b"npm", b"eyJ",
    }
)  # fmt: skip
_SHAPE = re.compile(rb"|".join(VALUE_SHAPES))
# A token after "Bearer " is a credential whatever its shape; base64 characters included.
_BEARER_TOKEN = re.compile(rb"[A-Za-z0-9._~+/-]+=*")
_BEARER_BEFORE = re.compile(rb"(?:^|[^A-Za-z0-9])bearer[ \t]+$", re.IGNORECASE)


def shaped_spans(data: bytes) -> list[tuple[int, int]]:
    """Where in ``data`` a value is shaped like a credential: (start, end) pairs, in order.

    A shape counts only at the start of a run of token characters (``task-management-…`` is
    not an ``sk-`` key, nor is ``mysk-…``), which also makes the scan cheap on prose
    (docs/decisions/0005-credentials-by-name-and-shape.md).
    """
    runs = data.translate(_RUNS)
    start = data.find(b";base64,")
    if start >= 0:
        # Base64 payloads (images, audio, files) are long tokens all through, and a key inside
        # one is encoded, not readable: data URLs are skipped to their closing quote.
        blank = bytearray(runs)
        while start >= 0:
            end = data.find(b'"', start)
            end = len(data) if end < 0 else end
            blank[start:end] = b" " * (end - start)
            start = data.find(b";base64,", end)
        runs = bytes(blank)
    find = runs.find
    spans: list[tuple[int, int]] = []
    pos = find(_RUN)
    while pos >= 0:
        match = _SHAPE.match(data, pos) if data[pos : pos + 3] in _STARTS else None
        if match is not None:
            spans.append(match.span())
        elif pos and data[pos - 1] in b" \t" and _BEARER_BEFORE.search(data, max(0, pos - 24), pos):
            token = _BEARER_TOKEN.match(data, pos)
            if token is not None:
                spans.append(token.span())
        end = find(b" ", pos + MIN_RUN)
        if end < 0:
            break
        pos = find(_RUN, end)
    return spans


def shaped_secrets(data: bytes) -> list[bytes]:
    """Every value in ``data`` shaped like a credential, in order."""
    return [data[start:end] for start, end in shaped_spans(data)]
