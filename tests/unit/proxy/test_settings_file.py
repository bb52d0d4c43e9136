from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from proxy.errors import ConfigError
from proxy.settings import ProxySettings, Secret

EXAMPLE = Path(__file__).parents[3] / "deploy" / "config.example.toml"


def load(tmp_path: Path, text: str, **env: str) -> ProxySettings:
    path = tmp_path / "logorhythms.toml"
    path.write_text(text)
    return ProxySettings.from_env({"LOGORHYTHMS_CONFIG": str(path), **env})


def test_the_documented_example_loads() -> None:
    settings = ProxySettings.from_env(
        {"LOGORHYTHMS_CONFIG": str(EXAMPLE), "GROQ_API_KEY": "gsk-canary"}
    )
    names = [p.name for p in settings.providers]
    assert names[:2] == ["openai", "anthropic"]
    assert {"openrouter", "groq", "together", "mistral", "deepseek", "gemini", "local"} <= set(
        names
    )
    groq = settings.provider("groq")
    assert groq.api_key == Secret("gsk-canary")
    assert "gsk-canary" not in repr(settings)
    assert settings.provider("openai").api_key is None  # OPENAI_API_KEY not set
    assert settings.provider("anthropic").dialect == "anthropic"
    assert settings.provider("local").bring_your_own_key is True
    assert settings.model_map["fast"] == "groq/llama-3.1-8b-instant"
    assert settings.upstream_total_timeout_s is None
    assert settings.upstream_read_timeout_s == 120.0
    assert ipaddress.ip_network("10.0.0.0/8") in settings.trusted_proxies
    assert settings.rate_limit_per_s == 5.0
    assert settings.max_in_flight == 4096
    assert settings.max_in_flight_per_client == 256
    assert (settings.body_first_byte_timeout_s, settings.body_read_timeout_s) == (30.0, 30.0)


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        '[providers.openai]\nbase_url = "https://api.openai.com/v1"\n'
        'api_key_env = "MY_KEY"\nmodels = ["gpt-4o"]\n'
        "[timeouts]\nbetween_chunks_s = 5\ntotal_s = 900\n",
        MY_KEY="sk-file",
        OPENAI_BASE_URL="http://127.0.0.1:9999/v1/",
        ANTHROPIC_API_KEY="sk-ant",
        LOGORHYTHMS_PORT="9000",
    )
    openai = settings.provider("openai")
    assert openai.base_url == "http://127.0.0.1:9999/v1"
    assert openai.api_key == Secret("sk-file")
    assert openai.models == ("gpt-4o",)
    anthropic = settings.provider("anthropic")  # added by the environment alone
    assert (anthropic.base_url, anthropic.api_key) == (
        "https://api.anthropic.com",
        Secret("sk-ant"),
    )
    assert settings.port == 9000
    assert settings.upstream_read_timeout_s == 5.0
    assert settings.upstream_total_timeout_s == 900.0


def test_no_file_means_openai_from_the_environment() -> None:
    settings = ProxySettings.from_env({"OPENAI_API_KEY": "sk-x"})
    assert [p.name for p in settings.providers] == ["openai"]
    assert settings.provider("openai").base_url == "https://api.openai.com/v1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[proxy]\nprot = 1\n", "unknown key proxy.prot"),
        ("[timeouts]\nbetween_chunk_s = 1\n", "unknown key timeouts.between_chunk_s"),
        ('[providers.x]\nbase_url = "https://x"\napi_key = "sk-oops"\n',
         "unknown key providers.x.api_key"),
        ("[cache]\n", "unknown key cache"),
        ("[providers.x]\ndialect = \"openai\"\n", "providers.x.base_url is required"),
        ("[timeouts]\nconnect_s = \"10\"\n", "timeouts.connect_s must be a float"),
        ("[timeouts]\nfirst_byte_s = 0\n", "more than 0 seconds"),
        ("[proxy]\ntrusted_proxies = [\"not-an-ip\"]\n", "proxy.trusted_proxies"),
        ("[proxy\n", "not valid TOML"),
    ],
)  # fmt: skip
def test_mistakes_name_the_key_and_the_file(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load(tmp_path, text)
    assert "logorhythms.toml" in str(caught.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        ProxySettings.from_env({"LOGORHYTHMS_CONFIG": str(tmp_path / "absent.toml")})


def test_admission_limits_from_the_file_and_the_environment(tmp_path: Path) -> None:
    text = (
        '[providers.openai]\nbase_url = "https://api.openai.com/v1"\n'
        "[proxy]\nbody_first_byte_timeout_s = 5\nbody_read_timeout_s = 2.5\n"
        "max_in_flight_per_client = 8\n"
    )
    from_file = load(tmp_path, text)
    assert from_file.body_first_byte_timeout_s == 5.0
    assert from_file.body_read_timeout_s == 2.5
    assert from_file.max_in_flight_per_client == 8
    overridden = load(
        tmp_path,
        text,
        LOGORHYTHMS_BODY_FIRST_BYTE_TIMEOUT_S="7",
        LOGORHYTHMS_BODY_READ_TIMEOUT_S="3",
        LOGORHYTHMS_MAX_IN_FLIGHT_PER_CLIENT="0",
    )
    assert overridden.body_first_byte_timeout_s == 7.0
    assert overridden.body_read_timeout_s == 3.0
    assert overridden.max_in_flight_per_client == 0


@pytest.mark.parametrize(
    "env",
    [
        {"LOGORHYTHMS_BODY_READ_TIMEOUT_S": "0"},
        {"LOGORHYTHMS_BODY_FIRST_BYTE_TIMEOUT_S": "-1"},
        {"LOGORHYTHMS_MAX_IN_FLIGHT_PER_CLIENT": "-5"},
    ],
)
def test_admission_limits_must_make_sense(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=next(iter(env))):
        ProxySettings.from_env({"OPENAI_API_KEY": "sk-x", **env})
