"""Batch limits of the consumers: defaults aimed at one insert per table and second."""

from __future__ import annotations

import pytest

from consumers.settings import ForwarderSettings, LoaderSettings, SettingsError


def test_the_loader_batches_up_to_a_second_of_full_rate_traffic_by_default() -> None:
    consumer = LoaderSettings.from_env({}).consumer
    assert consumer.batch_max_records == 50_000
    assert consumer.batch_max_age_s == 0.6


def test_batch_limits_come_from_the_environment() -> None:
    consumer = LoaderSettings.from_env(
        {"LOGORHYTHMS_BATCH_MAX_RECORDS": "2000", "LOGORHYTHMS_BATCH_MAX_AGE_S": "0.25"}
    ).consumer
    assert (consumer.batch_max_records, consumer.batch_max_age_s) == (2000, 0.25)


def test_the_forwarder_keeps_its_own_batch_size() -> None:
    settings = ForwarderSettings.from_env({"LOGORHYTHMS_BATCH_MAX_RECORDS": "2000"})
    assert settings.consumer.batch_max_records == 5_000


def test_a_batch_size_that_is_not_a_number_says_which_variable() -> None:
    with pytest.raises(SettingsError, match="LOGORHYTHMS_BATCH_MAX_RECORDS"):
        LoaderSettings.from_env({"LOGORHYTHMS_BATCH_MAX_RECORDS": "lots"})


def test_both_consumers_take_the_schema_registry_from_the_environment() -> None:
    url = "http://127.0.0.1:1/apis/ccompat/v7"
    env = {"LOGORHYTHMS_SCHEMA_REGISTRY_URL": url}
    assert LoaderSettings.from_env(env).consumer.schema_registry_url == url
    assert ForwarderSettings.from_env(env).consumer.schema_registry_url == url
    assert LoaderSettings.from_env({}).consumer.schema_registry_url is None
