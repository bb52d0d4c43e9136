"""The event contract shared by the proxy and the consumers: Avro schemas and their codec."""

from schemas.codec import EVENT_HEADER, SCHEMA_HEADER, Codec, CodecError, Decoded, EventType

__all__ = ["EVENT_HEADER", "SCHEMA_HEADER", "Codec", "CodecError", "Decoded", "EventType"]
