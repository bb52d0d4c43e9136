"""Before a batch is decoded: the schema ids of its Confluent-framed records, from the registry.

Decoding stays free of I/O (consumers/decode.py): ids the codec has not seen are looked up
first. A registry outage holds the batch (nothing is committed) and retries with backoff, like a
sink outage; an id the registry does not hold, or whose schema is not one of ours, stays
unknown and its records are dead-lettered by the decoder.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiokafka.structs import ConsumerRecord

from consumers.settings import ConsumerSettings
from schemas import Codec
from schemas.registry import RegistryError, SchemaRegistry, learn_schema_ids

log = logging.getLogger(__name__)


class SchemaIdLearner:
    def __init__(self, registry: SchemaRegistry, codec: Codec, settings: ConsumerSettings) -> None:
        self._registry = registry
        self._codec = codec
        self._settings = settings
        self.retries = 0

    @classmethod
    def for_settings(cls, settings: ConsumerSettings, codec: Codec) -> SchemaIdLearner | None:
        """None when no registry is configured: Confluent-framed records are then undecodable."""
        if settings.schema_registry_url is None:
            return None
        return cls(SchemaRegistry(settings.schema_registry_url), codec, settings)

    async def learn(
        self, pending: Sequence[ConsumerRecord[bytes, bytes]], stop: asyncio.Event
    ) -> None:
        delay = self._settings.retry_initial_backoff_s
        while True:
            try:
                await learn_schema_ids(
                    self._registry, self._codec, (r.value or b"" for r in pending)
                )
                return
            except RegistryError as exc:
                if stop.is_set():
                    raise
                log.warning("schema registry unavailable, retrying in %.1f s: %s", delay, exc)
                self.retries += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._settings.retry_max_backoff_s)
