"""Confluent framing end to end against a real schema registry (Apicurio Registry, built from
Maven Central by deploy/registry/pom.xml): the proxy registers the schemas and frames every
value with its id, the loader reads the records into ClickHouse, and ClickHouse's own
``AvroConfluent`` format reads them with the registry, as ClickHouse's Kafka engine would.

The registry starts once for the module (~15 s on 2 cores; its first build, cached in
~/.cache/logorhythms, takes a few minutes more).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from deploy.local.kafka.ports import free_ports
from deploy.local.registry import RegistryServer
from proxy.errors import ConfigError
from proxy.framing import event_codec
from proxy.settings import Provider, ProxySettings
from schemas import Codec, EventType
from schemas.codec import SCHEMA_DIR, load_schema
from schemas.registry import subject_for
from tests.integration.conftest import ProxyFactory

# slow: the module took 17 to 55 s on 2 cores (idle to busy), most of it the registry starting;
# 600 s covers its first build.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    server = RegistryServer(tmp_path_factory.mktemp("registry"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _registered_id(registry: RegistryServer, subject: str) -> int:
    with urllib.request.urlopen(f"{registry.url}/subjects/{subject}/versions/latest") as answer:  # noqa: S310 (loopback)
        return int(json.load(answer)["id"])


async def test_framed_records_load_and_clickhouse_reads_them_with_the_registry(
    pipeline_factory: ProxyFactory, registry: RegistryServer, tmp_path: Path
) -> None:
    pipeline = await pipeline_factory(
        kafka_framing="confluent",
        schema_registry_url=registry.url,
        consumer={"schema_registry_url": registry.url},
    )
    request_ids = []
    async with aiohttp.ClientSession() as http:
        for stream in (False, True):
            body = {
                "model": "gpt-4o",
                "stream": stream,
                "messages": [{"role": "user", "content": "hi"}],
            }
            async with http.post(
                f"{pipeline.proxy_url}/v1/chat/completions", json=body
            ) as response:
                assert response.status == 200
                await response.read()
                request_ids.append(response.headers["x-logorhythms-request-id"])

    ids = {t: _registered_id(registry, subject_for(pipeline.topic, t)) for t in EventType}
    assert len(set(ids.values())) == 3
    records = await pipeline.records(6)
    codec = Codec()
    for record in records:
        headers = dict(record.headers)
        event_type = EventType(headers["logorhythms.event"].decode())
        # 00, the id the registry gave this event's schema, then the Avro body; the headers
        # still name the schema by its fingerprint.
        assert record.value[:5] == b"\x00" + ids[event_type].to_bytes(4, "big")
        assert headers["logorhythms.schema"] == codec.fingerprint(event_type).hex().encode()

    # The loader, told the registry, decodes them: both exchanges are in ClickHouse.
    for request_id in request_ids:
        exchange = await pipeline.exchange(request_id, "request_id, status")
        assert exchange == {"request_id": request_id, "status": 200}

    # ClickHouse's AvroConfluent format reads the request events with the registry alone.
    requests = [r.value for r in records if dict(r.headers)["logorhythms.event"] == b"request"]
    framed = tmp_path / "requests.avro-confluent"
    framed.write_bytes(b"".join(requests))
    rows = await pipeline.clickhouse.rows(
        f"SELECT request_id, method, path FROM file('{framed}', 'AvroConfluent') "  # noqa: S608
        f"ORDER BY request_id SETTINGS format_avro_schema_registry_url = '{registry.url}'"
    )
    assert rows == [(i, "POST", "/v1/chat/completions") for i in sorted(request_ids)]

    # The whole topic in one read, as a Kafka engine table sees it: three record types, each
    # with its own schema id; a column that only chunks have is NULL for the others.
    every = tmp_path / "topic.avro-confluent"
    every.write_bytes(b"".join(r.value for r in records))
    structure = "request_id String, seq Nullable(Int64)"
    rows = await pipeline.clickhouse.rows(
        f"SELECT request_id, seq FROM file('{every}', 'AvroConfluent', '{structure}') "  # noqa: S608
        f"SETTINGS format_avro_schema_registry_url = '{registry.url}', "
        "input_format_avro_allow_missing_fields = 1"
    )
    chunks = [r for r in records if dict(r.headers)["logorhythms.event"] == b"chunk"]
    reader = Codec()
    for event_type, schema_id in ids.items():
        reader.add_schema_id(schema_id, load_schema(SCHEMA_DIR / f"{event_type.value}.avsc"))
    assert len(rows) == len(records)
    assert sorted(seq for _, seq in rows if seq is not None) == sorted(
        reader.decode(r.value).record["seq"] for r in chunks
    )


async def test_a_second_proxy_gets_the_same_ids(registry: RegistryServer) -> None:
    settings = ProxySettings(
        providers=(Provider(name="openai", base_url="http://127.0.0.1:1/v1"),),
        topic="logorhythms.registry-idempotence",
        kafka_framing="confluent",
        schema_registry_url=registry.url,
    )
    first = (await event_codec(settings)).encode(EventType.CHUNK, _chunk())
    second = (await event_codec(settings)).encode(EventType.CHUNK, _chunk())
    assert first[:5] == second[:5]
    assert first[0] == 0


async def test_an_unreachable_registry_stops_the_start_with_the_reason() -> None:
    settings = ProxySettings(
        providers=(Provider(name="openai", base_url="http://127.0.0.1:1/v1"),),
        kafka_framing="confluent",
        schema_registry_url=f"http://127.0.0.1:{free_ports(1)[0]}/apis/ccompat/v7",
    )
    with pytest.raises(ConfigError, match=r"could not register the event schemas.*failed"):
        await event_codec(settings)


def _chunk() -> dict[str, Any]:
    return {
        "request_id": "0190f1e2-0000-7000-8000-000000000001",
        "seq": 1,
        "offset_ns": 1,
        "data": b"x",
        "size": 1,
        "truncated": False,
        "delivered": True,
    }
