"""The event contract shared by the proxy and the consumers: Avro schemas and their codec."""

from schemas.codec import Codec, CodecError, Decoded, EventType

__all__ = ["Codec", "CodecError", "Decoded", "EventType"]
