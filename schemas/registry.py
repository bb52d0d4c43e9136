"""A client of the Confluent schema registry API, for Confluent framing (docs/EVENTS.md).

Only what the framing needs: register our three schemas (the proxy, at start-up) and look up the
schema of an id (the consumers, for ids they have not seen). Subjects follow Confluent's
TopicRecordNameStrategy, ``<topic>-<record full name>``, since one topic carries three records.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import aiohttp
from fastavro.schema import SchemaParseException

from schemas.codec import SCHEMA_DIR, Codec, EventType, load_schema

__all__ = [
    "RegistryError",
    "SchemaRegistry",
    "learn_schema_ids",
    "register_event_schemas",
    "subject_for",
]

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
_RECORD_NAMES = {
    EventType.REQUEST: "dev.logorhythms.exchange.Request",
    EventType.CHUNK: "dev.logorhythms.exchange.Chunk",
    EventType.COMPLETED: "dev.logorhythms.exchange.Completed",
}


class RegistryError(Exception):
    """The registry refused a call or could not be reached; the message says which and why."""

    def __init__(self, message: str, *, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


def subject_for(topic: str, event_type: EventType) -> str:
    return f"{topic}-{_RECORD_NAMES[event_type]}"


class SchemaRegistry:
    """The Confluent-compatible API at ``url`` (for Apicurio: ``…/apis/ccompat/v7``)."""

    def __init__(self, url: str, *, timeout_s: float = 10) -> None:
        self.url = url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def register(self, subject: str, schema: str) -> int:
        """The id of ``schema`` under ``subject``, registering it if new (idempotent)."""
        answer = await self._call("POST", f"/subjects/{subject}/versions", {"schema": schema})
        return int(answer["id"])

    async def schema(self, schema_id: int) -> str:
        """The schema text the registry holds for ``schema_id``."""
        answer = await self._call("GET", f"/schemas/ids/{schema_id}", None)
        return str(answer["schema"])

    async def _call(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        target = f"{self.url}{path}"
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout) as session,
                session.request(
                    method,
                    target,
                    data=None if body is None else json.dumps(body),
                    headers={"Content-Type": _CONTENT_TYPE, "Accept": _CONTENT_TYPE},
                ) as response,
            ):
                text = await response.text()
                if response.status >= 400:
                    # 4xx: the registry refused this schema or id; retrying sends the same call.
                    raise RegistryError(
                        f"schema registry {method} {target} answered {response.status}: "
                        f"{text[:300]}",
                        retriable=response.status >= 500,
                    )
                loaded: dict[str, Any] = json.loads(text)
                return loaded
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise RegistryError(
                f"schema registry {method} {target} failed ({type(exc).__name__}: {exc}); "
                "check that LOGORHYTHMS_SCHEMA_REGISTRY_URL points at a running "
                "Confluent-compatible registry",
                retriable=True,
            ) from exc


async def register_event_schemas(registry: SchemaRegistry, topic: str) -> dict[EventType, int]:
    """Register the current schemas of the three events for ``topic``: their ids."""
    ids = {}
    for event_type in EventType:
        text = json.dumps(load_schema(SCHEMA_DIR / f"{event_type.value}.avsc"))
        ids[event_type] = await registry.register(subject_for(topic, event_type), text)
    return ids


async def learn_schema_ids(registry: SchemaRegistry, codec: Codec, values: Iterable[bytes]) -> None:
    """Teach ``codec`` the id of every Confluent-framed value it does not know yet, so decoding
    stays free of I/O. An id the registry does not have, or whose schema is not one of ours,
    is left unknown: the codec then refuses those values, which are dead-lettered."""
    for schema_id in {int.from_bytes(v[1:5]) for v in values if v[:1] == b"\x00" and len(v) >= 5}:
        if codec.knows_schema_id(schema_id):
            continue
        try:
            codec.add_schema_id(schema_id, await registry.schema(schema_id))
        except RegistryError as exc:
            if exc.retriable:
                raise
        except (ValueError, KeyError, TypeError, SchemaParseException):
            continue  # not one of our event schemas, or not a schema at all
