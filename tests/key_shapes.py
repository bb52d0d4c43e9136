"""Canary credentials of every shape the proxy recognises, for the redaction tests.

Each is unique (derived from its label), so a test can grep stored bytes for it and find nothing
else. ``SHAPED`` are recognised by their value alone; ``NAMED`` only by the name they travel under.
"""

from __future__ import annotations

import base64
import hashlib


def _hex(label: str, n: int) -> str:
    out = ""
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{label}/{counter}".encode()).hexdigest()
        counter += 1
    return out[:n]


def _alnum(label: str, n: int) -> str:
    raw = base64.b64encode(bytes.fromhex(_hex(label, 2 * n))).decode()
    return "".join(c for c in raw if c.isalnum())[:n]


def _jwt(label: str) -> str:
    def part(doc: str) -> str:
        return base64.urlsafe_b64encode(doc.encode()).decode().rstrip("=")

    return ".".join(
        (
            part('{"alg":"HS256","typ":"JWT"}'),
            part(f'{{"sub":"{_hex(label, 12)}","iat":1700000000}}'),
            _alnum(label + "sig", 43),
        )
    )


SHAPED: dict[str, str] = {
    "openai legacy": "sk-" + _alnum("openai", 48),
    "openai project": "sk-proj-" + _alnum("proj", 40) + "_" + _alnum("proj2", 20),
    "openai service account": "sk-svcacct-" + _alnum("svc", 40),
    "anthropic": "sk-ant-api03-" + _alnum("ant", 86) + "-" + _alnum("ant2", 6) + "AA",
    "anthropic admin": "sk-ant-admin01-" + _alnum("antadmin", 60),
    "openrouter": "sk-or-v1-" + _hex("openrouter", 64),
    "deepseek": "sk-" + _hex("deepseek", 32),
    "aws access key id": "AKIA" + _hex("aws", 16).upper(),
    "aws sts key id": "ASIA" + _hex("sts", 16).upper(),
    "github classic": "ghp_" + _alnum("ghp", 36),
    "github oauth": "gho_" + _alnum("gho", 36),
    "github user-to-server": "ghu_" + _alnum("ghu", 36),
    "github server-to-server": "ghs_" + _alnum("ghs", 36),
    "github refresh": "ghr_" + _alnum("ghr", 36),
    "github fine-grained": "github_pat_" + _alnum("pat", 22) + "_" + _alnum("pat2", 59),
    "groq": "gsk_" + _alnum("groq", 52),
    "xai": "xai-" + _alnum("xai", 80),
    "google api key": "AIza" + _alnum("google", 35),
    "google oauth": "ya29." + _alnum("ya29", 60),
    "hugging face": "hf_" + _alnum("hf", 34),
    "gitlab": "glpat-" + _alnum("gitlab", 20),
    "slack bot": "xoxb-" + _hex("slackb", 12) + "-" + _hex("slackb2", 13) + "-" + _alnum("sb", 24),
    "slack user": "xoxp-" + _hex("slackp", 12) + "-" + _hex("slackp2", 13) + "-" + _alnum("sp", 32),
    "stripe live secret": "sk_live_" + _alnum("stripe", 24),
    "stripe restricted": "rk_live_" + _alnum("stripe-rk", 24),
    "stripe test secret": "sk_test_" + _alnum("stripe-test", 24),
    "perplexity": "pplx-" + _alnum("pplx", 48),
    "replicate": "r8_" + _alnum("replicate", 37),
    "npm": "npm_" + _alnum("npm", 36),
    "jwt": _jwt("jwt"),
}
# A token after "Bearer " is a credential whatever it looks like.
BEARER_TOKEN = "opaque" + _alnum("bearer", 26)
# Secrets with no recognisable shape: found only by the name they travel under.
NAMED: dict[str, str] = {
    name: f"plain{_hex(name, 20)}"
    for name in (
        "X-Auth-Token",
        "anthropic-api-key",
        "OpenAI-Api-Key",
        "X-Session-Token",
        "query key",
        "query double-encoded name",
        "path key",
        "body openai_api_key",
        "body token",
        "body nested client_secret",
        "body tool argument password",
    )
}
ALL = (*SHAPED.values(), BEARER_TOKEN, *NAMED.values())
