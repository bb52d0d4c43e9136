"""What counts as a credential: the name it travels under, or the shape of its value.

Pure and I/O-free. ``proxy.redaction`` applies these rules to headers, query strings, paths and
bodies before an event is built; ``proxy.upstream`` uses the name rule to keep client keys in the
query string from going upstream.

Names are split into words at non-alphanumerics and camelCase boundaries (``OpenAI-Api-Key`` is
open, ai, api, key), so ``author`` is not ``auth`` and ``max_tokens`` (plural) is not ``token``.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import unquote_plus

# The value shapes live in ``schemas.keyshapes``: the dataset exports' scrubber finds the same
# key formats in captured text, and ``schemas`` is what the proxy and the consumers share.
from schemas.keyshapes import MIN_RUN, VALUE_SHAPES, shaped_secrets, shaped_spans

# A name holding any of these words is a credential's name, wherever it stands.
CREDENTIAL_WORDS = frozenset(
    {
        "auth", "authn", "authz", "authorization", "authentication",
        "token", "apitoken", "accesstoken", "authtoken", "sessiontoken", "csrftoken", "xsrftoken",
        "secret", "secrets", "clientsecret",
        "password", "passwd", "pwd", "passphrase",
        "cookie", "cookies",
        "session", "sessionid",
        "credential", "credentials", "creds",
        "signature",
        "bearer", "jwt",
        "apikey", "xapikey", "accesskey", "secretkey", "privatekey",
    }
)  # fmt: skip
# "key" is a credential's name only after one of these words (api_key, secret-key, x-api-key,
# Ocp-Apim-Subscription-Key): prompt_cache_key and Idempotency-Key are not secrets.
KEY_QUALIFIERS = frozenset(
    {
        "api", "secret", "private", "access", "auth", "client", "service", "signing",
        "subscription", "master", "session", "encryption", "license", "admin", "app",
        "application",
    }
)  # fmt: skip
# Names that are credentials without saying so: OpenAI's organisation and project ids travel with
# the key and identify the account.
CREDENTIAL_NAMES = frozenset({"openai-organization", "openai-project"})
# Authorization-like values keep their scheme word, so analysts can tell Bearer from Basic.
SCHEMES = frozenset({"bearer", "basic", "token", "apikey", "digest"})

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


@functools.lru_cache(maxsize=4096)
def is_credential_name(name: str, *, bare_key: bool = False) -> bool:
    """Whether a header, query parameter or JSON member called ``name`` holds a credential.

    ``bare_key``: whether the name ``key`` alone counts. It does for headers and query parameters
    (Gemini's ``?key=``); not for JSON members, where ``key`` is far more often a tool argument or
    a dictionary entry (``{"key": "Enter"}``); a provider key under it is still found by shape.
    """
    if name.lower() in CREDENTIAL_NAMES:
        return True
    words = [w.lower() for w in _WORD.findall(name)]
    if any(w in CREDENTIAL_WORDS for w in words):
        return True
    for i, word in enumerate(words):
        if word == "key" and (
            (i > 0 and words[i - 1] in KEY_QUALIFIERS) or (bare_key and len(words) == 1)
        ):
            return True
    return False


def query_param_name(raw: str) -> str:
    """A query parameter's name decoded until stable: ``%256Bey`` and ``%6Bey`` are ``key``."""
    for _ in range(8):
        decoded = unquote_plus(raw)
        if decoded == raw:
            break
        raw = decoded
    return raw


__all__ = [
    "CREDENTIAL_NAMES",
    "CREDENTIAL_WORDS",
    "KEY_QUALIFIERS",
    "MIN_RUN",
    "SCHEMES",
    "VALUE_SHAPES",
    "is_credential_name",
    "query_param_name",
    "shaped_secrets",
    "shaped_spans",
]
