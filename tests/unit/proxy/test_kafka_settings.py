from __future__ import annotations

import dataclasses

import pytest

from proxy.errors import ConfigError
from proxy.settings import ProxySettings
from schemas.limits import KAFKA_MAX_MESSAGE_BYTES, MAX_EVENT_OVERHEAD_BYTES

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


def test_a_body_the_proxy_accepts_by_default_fits_whole_in_one_event_kafka_takes() -> None:
    settings = ProxySettings.from_env(UPSTREAM)
    assert settings.max_body_bytes >= 32 * 1024 * 1024  # Anthropic's request limit
    # EventRecorder keeps 4 KiB of the event for its other fields.
    assert settings.max_event_bytes - 4096 >= settings.max_body_bytes
    assert settings.max_event_bytes + MAX_EVENT_OVERHEAD_BYTES <= KAFKA_MAX_MESSAGE_BYTES
    assert settings.journal_segment_bytes >= 2 * settings.max_event_bytes


@pytest.mark.parametrize("max_event_bytes", [KAFKA_MAX_MESSAGE_BYTES, 1024])
def test_an_event_cap_kafka_would_refuse_or_too_small_to_use_is_a_config_error(
    max_event_bytes: int,
) -> None:
    with pytest.raises(ConfigError, match="max_event_bytes must be between"):
        dataclasses.replace(ProxySettings.from_env(UPSTREAM), max_event_bytes=max_event_bytes)


def test_framing_is_single_object_unless_confluent_is_asked_for() -> None:
    assert ProxySettings.from_env(UPSTREAM).kafka_framing == "single-object"
    settings = ProxySettings.from_env(
        {
            **UPSTREAM,
            "LOGORHYTHMS_KAFKA_FRAMING": "Confluent",
            "LOGORHYTHMS_SCHEMA_REGISTRY_URL": "http://127.0.0.1:1/apis/ccompat/v7",
        }
    )
    assert settings.kafka_framing == "confluent"
    assert settings.schema_registry_url == "http://127.0.0.1:1/apis/ccompat/v7"


def test_confluent_framing_without_a_registry_says_what_is_missing() -> None:
    with pytest.raises(ConfigError, match="needs LOGORHYTHMS_SCHEMA_REGISTRY_URL"):
        ProxySettings.from_env({**UPSTREAM, "LOGORHYTHMS_KAFKA_FRAMING": "confluent"})


def test_an_unknown_framing_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="use one of single-object, confluent"):
        ProxySettings.from_env({**UPSTREAM, "LOGORHYTHMS_KAFKA_FRAMING": "protobuf"})
