"""The codec the proxy encodes events with: single-object encoding, or Confluent framing.

With ``LOGORHYTHMS_KAFKA_FRAMING=confluent`` each worker registers the three current event
schemas in the schema registry at start-up (idempotent: the same schema keeps its id) and frames
every value with its schema's id. A registry that cannot be reached stops the start-up with the
reason: events written without ids would be unreadable by the outside readers the mode is for.
"""

from __future__ import annotations

import logging

from proxy.errors import ConfigError
from proxy.settings import ProxySettings
from schemas import Codec
from schemas.registry import RegistryError, SchemaRegistry, register_event_schemas

log = logging.getLogger(__name__)


async def event_codec(settings: ProxySettings) -> Codec:
    codec = Codec()
    if settings.kafka_framing != "confluent":
        return codec
    assert settings.schema_registry_url is not None  # ProxySettings requires it for this mode
    registry = SchemaRegistry(settings.schema_registry_url)
    try:
        ids = await register_event_schemas(registry, settings.topic)
    except RegistryError as exc:
        raise ConfigError(
            f"LOGORHYTHMS_KAFKA_FRAMING=confluent: could not register the event schemas: {exc}"
        ) from exc
    codec.frame_with_schema_ids(ids)
    log.info(
        "Confluent framing: schema ids %s in %s",
        {t.value: i for t, i in ids.items()},
        registry.url,
    )
    return codec
