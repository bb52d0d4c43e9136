from __future__ import annotations

import pytest

from proxy.errors import ConfigError
from proxy.settings import ProxySettings

UPSTREAM = {"OPENAI_BASE_URL": "http://127.0.0.1:1/v1"}


def test_the_producer_defaults_are_zstd_and_a_50_ms_linger() -> None:
    settings = ProxySettings.from_env(UPSTREAM)
    assert (settings.kafka_compression, settings.kafka_linger_ms) == ("zstd", 50)


def test_linger_and_compression_come_from_the_environment() -> None:
    settings = ProxySettings.from_env(
        {**UPSTREAM, "LOGORHYTHMS_KAFKA_LINGER_MS": "5", "LOGORHYTHMS_KAFKA_COMPRESSION": " None"}
    )
    assert (settings.kafka_compression, settings.kafka_linger_ms) == ("none", 5)


@pytest.mark.parametrize(
    ("name", "value"),
    [("LOGORHYTHMS_KAFKA_COMPRESSION", "snappy"), ("LOGORHYTHMS_KAFKA_LINGER_MS", "-1")],
)
def test_a_bad_producer_setting_names_the_variable_and_the_choices(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=r"LOGORHYTHMS_KAFKA_LINGER_MS.*zstd, lz4, gzip, none"):
        ProxySettings.from_env({**UPSTREAM, name: value})
