"""Credentials found and fingerprinted: HMAC-SHA256 under a key only the service holds.

``Fingerprinter`` replaces a credential wherever the proxy stores it (headers, query, path);
``Redactor`` does it inside captured bytes (bodies, response chunks) for one exchange. Pure: no
I/O. proxy/credentials.py decides what a credential looks like.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from urllib.parse import quote

from proxy import credentials

FINGERPRINT_PREFIX = "fp:"
FINGERPRINT_CACHE_MAX = 4096
# A known secret shorter than this is not searched for in bodies: replacing every occurrence of
# "abc" would corrupt prompts, and a key that short is no secret anyway.
MIN_REDACTED_SECRET_CHARS = 8
# Header names whose value is the client's key (its fingerprint is stored on its own).
CLIENT_KEY_HEADERS = frozenset({"authorization", "x-api-key", "api-key"})
# A JSON member with a string value: its name, then (matched from the name's end) its value.
# Written over bytes, so it also works on bodies that are not valid UTF-8 or JSON. Every member
# name is looked at (the engine skips from quote to quote), and ``credentials.is_credential_name``
# (cached) decides; the value is read only for a credential's name, so "content" costs nothing.
_MEMBER_NAME = re.compile(rb'"([A-Za-z0-9_.$@-]{1,64}+)"\s*+:\s*+"')
_MEMBER_VALUE = re.compile(rb'(?:[^"\\]|\\.)*+(?=")')
# The same one level down: a member of JSON held in a JSON string, as tool-call arguments are
# (``"arguments": "{\"token\": \"…\"}"``) and as JSON pasted into a prompt is.
_ESCAPED_NAME = re.compile(rb'\\"([A-Za-z0-9_.$@-]{1,64}+)\\"\s*+:\s*+\\"')
_ESCAPED_VALUE = re.compile(rb'[^"\\]*+(?=\\")')
# ``name=value`` inside a path or free text (``/v1/x?key=…``, ``;token=…``).
_ASSIGNMENT = re.compile(r"([A-Za-z0-9_.-]{1,64})=([^&;/?#\s]+)")


class Fingerprinter:
    """Replaces credentials by an HMAC-SHA256 prefix under a key only the service holds."""

    __slots__ = ("_cache", "_key")

    def __init__(self, key: bytes) -> None:
        self._key = key
        # The same few keys arrive with every request (each exchange fingerprints its key three or
        # four times): a dict hit costs a small fraction of an HMAC. Bounded; it holds only values
        # that are in this process's memory anyway, and is never written anywhere.
        self._cache: dict[str, str] = {}

    def fingerprint(self, secret: str) -> str:
        fp = self._cache.get(secret)
        if fp is None:
            digest = hmac.new(self._key, secret.encode("utf-8", "surrogateescape"), hashlib.sha256)
            fp = FINGERPRINT_PREFIX + digest.hexdigest()[:24]
            if len(self._cache) >= FINGERPRINT_CACHE_MAX:
                self._cache.clear()  # a flood of distinct keys: start over, never grow
            self._cache[secret] = fp
        return fp

    def header_value(self, name: str, value: str) -> tuple[str, str | None]:
        """The value to store for a header, and the credential's fingerprint if it held one.

        A header named like a credential (``X-Auth-Token``, ``OpenAI-Api-Key``, ``Cookie``) is
        fingerprinted whole, keeping an authorization scheme word; any other header keeps its
        value with each credential-shaped part (``sk-…``, a JWT, ``Bearer …``) fingerprinted.
        """
        if not credentials.is_credential_name(name, bare_key=True):
            return self._shapes(value), None
        scheme, sep, token = value.partition(" ")
        if sep and token.strip() and scheme.lower() in credentials.SCHEMES:
            fp = self.fingerprint(token.strip())
            return f"{scheme} {fp}", fp
        fp = self.fingerprint(value.strip())
        return fp, fp

    def _shapes(self, text: str) -> str:
        data = text.encode("utf-8", "surrogateescape")
        spans = credentials.shaped_spans(data)
        if not spans:
            return text
        return self.replace_spans(data, spans).decode("utf-8", "surrogateescape")

    def replace_spans(self, data: bytes, spans: list[tuple[int, int]]) -> bytes:
        out: list[bytes] = []
        last = 0
        for start, end in spans:
            secret = data[start:end].decode("utf-8", "surrogateescape")
            out += (data[last:start], self.fingerprint(secret).encode())
            last = end
        out.append(data[last:])
        return b"".join(out)

    def headers(self, raw: Iterable[tuple[str, str]]) -> tuple[list[dict[str, str]], str | None]:
        """All headers in order, credentials fingerprinted; also the client key's fingerprint."""
        stored: list[dict[str, str]] = []
        client_key: str | None = None
        for name, value in raw:
            lname = name.lower()
            safe, fp = self.header_value(lname, value)
            if fp is not None and lname in CLIENT_KEY_HEADERS:
                client_key = client_key or fp
            stored.append({"name": lname, "value": safe})
        return stored, client_key

    def redactor(
        self,
        raw_headers: Iterable[tuple[str, str]],
        query_string: str,
        service_secrets: Iterable[str],
        path: str = "",
    ) -> Redactor:
        """A redactor for one exchange: every credential the client sent, plus the service's keys.

        The stored headers and query are fingerprinted field by field; this catches the same
        values wherever else they travel (the body, an upstream error echoing them). Credentials
        the body itself holds are added as the body is redacted.
        """
        found: set[str] = set(service_secrets)
        for name, value in raw_headers:
            if credentials.is_credential_name(name, bare_key=True):
                found.add(value.strip())
                found.add(value.partition(" ")[2].strip())  # the token after "Bearer"
                if name.lower() in {"cookie", "set-cookie"}:
                    found.update(c.partition("=")[2].strip() for c in value.split(";"))
            found.update(_decoded(s) for s in credentials.shaped_secrets(_encoded(value)))
        for text in (query_string, path):
            found.update(_assigned_secrets(text))
        # Longest first, so a token inside a longer stored value is replaced as part of it.
        redactor = Redactor(self, ())
        for secret in found:
            redactor.learn(secret)
        return redactor

    def query(self, query_string: str) -> str:
        """A raw query string with credentials fingerprinted; untouched parameters keep their
        bytes. A parameter is a credential by its name, decoded until stable (``?%256Bey=``),
        or by its value's shape, decoded until stable as well."""
        if not query_string:
            return query_string
        parts = query_string.split("&")
        changed = False
        for i, part in enumerate(parts):
            name, sep, value = part.partition("=")
            plain = credentials.query_param_name(value)
            if sep and credentials.is_credential_name(
                credentials.query_param_name(name), bare_key=True
            ):
                parts[i] = f"{name}={self.fingerprint(plain)}"
                changed = True
            elif credentials.shaped_spans(_encoded(plain)):
                parts[i] = f"{name}{sep}{quote(self._shapes(plain), safe=':')}"
                changed = True
        return "&".join(parts) if changed else query_string

    def text(self, text: str) -> str:
        """A path or URL with credentials fingerprinted: ``name=value`` pairs named like a
        credential (``/v1/x?key=…``, ``;token=…``) and credential-shaped values."""
        if "=" in text:
            text = _ASSIGNMENT.sub(self._assignment, text)
        return self._shapes(text)

    def _assignment(self, match: re.Match[str]) -> str:
        name, value = match.group(1), match.group(2)
        if not credentials.is_credential_name(name, bare_key=True) or value.startswith(
            FINGERPRINT_PREFIX
        ):
            return match.group(0)
        return f"{name}={self.fingerprint(value)}"


def _encoded(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _decoded(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _assigned_secrets(text: str) -> list[str]:
    """The values of credential-named ``name=value`` pairs and the credential-shaped values in a
    query string or path, each decoded until stable."""
    if not text:
        return []
    plain = credentials.query_param_name(text)
    found = [
        m.group(2)
        for source in (text, plain)
        for m in _ASSIGNMENT.finditer(source)
        if credentials.is_credential_name(credentials.query_param_name(m.group(1)), bare_key=True)
    ]
    found += (_decoded(s) for s in credentials.shaped_secrets(_encoded(plain)))
    return found


class Redactor:
    """Replaces credentials inside captured bytes, leaving every other byte as it was.

    Three rules: exact occurrences of the secrets known for this exchange become their
    fingerprint; the string value of a JSON member named like a credential (``api_key``,
    ``authorization``, ``X-Auth-Token``, …, at any depth, also one level down in JSON held in a
    string) becomes the fingerprint of that value; and every credential-shaped value (``sk-…``,
    ``AKIA…``, a JWT, ``Bearer …``; proxy.credentials) becomes its fingerprint. Replacements stay
    inside JSON strings, so a JSON body stays JSON. What the body's rules find is learnt, so an
    upstream echoing it in a response chunk is caught by the first rule.
    """

    __slots__ = ("_fingerprinter", "_known")

    def __init__(
        self, fingerprinter: Fingerprinter, known: tuple[tuple[bytes, bytes], ...]
    ) -> None:
        self._fingerprinter = fingerprinter
        self._known = list(known)

    @classmethod
    def masking(cls, fingerprinter: Fingerprinter, secrets: Iterable[str]) -> Redactor:
        """A redactor replacing each secret by as many ``*``: for bytes a client receives, whose
        Content-Length the upstream has already set."""
        encoded = sorted((s.encode() for s in secrets if s), key=len, reverse=True)
        return cls(fingerprinter, tuple((s, b"*" * len(s)) for s in encoded))

    def copy(self) -> Redactor:
        """A redactor knowing the same secrets, to work on in another thread: ``body()`` learns
        as it goes, and this one's list must not change while the event loop reads it."""
        return Redactor(self._fingerprinter, tuple(self._known))

    def merge(self, other: Redactor) -> None:
        """Search for every secret ``other`` knows too (what a copy learnt from a body)."""
        added = [pair for pair in other._known if pair not in self._known]
        if added:
            merged = [*self._known, *added]
            self._known = sorted(merged, key=lambda pair: len(pair[0]), reverse=True)

    def learn(self, secret: str) -> None:
        """Search for ``secret`` from now on (if it is long enough to be one)."""
        if len(secret) < MIN_REDACTED_SECRET_CHARS or secret.startswith(FINGERPRINT_PREFIX):
            return
        data = _encoded(secret)
        if any(known == data for known, _ in self._known):
            return
        self._known.append((data, self._fingerprinter.fingerprint(secret).encode()))
        self._known.sort(key=lambda pair: len(pair[0]), reverse=True)

    def known(self, data: bytes) -> bytes:
        """``data`` with each known secret replaced by its fingerprint (for response chunks)."""
        for secret, fp in self._known:
            if secret in data:
                data = data.replace(secret, fp)
        return data

    def text(self, text: str) -> str:
        """A path or URL with credentials fingerprinted: the known secrets, credential-named
        ``name=value`` pairs and credential-shaped values (``Fingerprinter.text``)."""
        return _decoded(self.known(_encoded(self._fingerprinter.text(text))))

    def body(self, data: bytes) -> bytes:
        """A request body with every credential fingerprinted by the three rules."""
        # Each pass is cheap on a body without credentials: the member regexes start with a
        # literal quote (the engine skips from quote to quote), the shape scan looks at long
        # tokens only (proxy.credentials).
        data = self.known(data)
        learnt = len(self._known)
        data = self._members(data, _MEMBER_NAME, _MEMBER_VALUE)
        if b'\\"' in data:
            data = self._members(data, _ESCAPED_NAME, _ESCAPED_VALUE)
        spans = credentials.shaped_spans(data)
        if spans:
            for start, end in spans:
                self.learn(_decoded(data[start:end]))
            data = self._fingerprinter.replace_spans(data, spans)
        if len(self._known) > learnt:  # a value found by name may appear elsewhere in the body
            data = self.known(data)
        return data

    def _members(self, data: bytes, names: re.Pattern[bytes], values: re.Pattern[bytes]) -> bytes:
        """``data`` with the string value of each credential-named member fingerprinted."""
        out: list[bytes] = []
        last = 0
        for name in names.finditer(data):
            if name.start() < last or not credentials.is_credential_name(
                name.group(1).decode("latin-1")
            ):
                continue
            value = values.match(data, name.end())
            if value is None or not value.group():
                continue
            if value.group().rpartition(b" ")[2].startswith(FINGERPRINT_PREFIX.encode()):
                continue  # already replaced as a known secret
            out += (data[last : value.start()], self._replacement(value.group()))
            last = value.end()
        if not out:
            return data
        out.append(data[last:])
        return b"".join(out)

    def _replacement(self, value: bytes) -> bytes:
        token = _decoded(value)
        scheme, sep, rest = token.partition(" ")
        if sep and rest.strip() and scheme.lower() in credentials.SCHEMES:
            self.learn(rest.strip())
            return f"{scheme} {self._fingerprinter.fingerprint(rest.strip())}".encode()
        self.learn(token)
        return self._fingerprinter.fingerprint(token).encode()
