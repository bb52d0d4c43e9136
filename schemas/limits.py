"""How large one event may be on the bus: the limit the broker, the topic, the producer and the
consumers are all configured with, so that no hop refuses what the one before accepted.

A request body is captured whole in its request event up to the proxy's event cap (32 MiB by
default, ``ProxySettings.max_event_bytes``); the Kafka limit leaves room above that cap for the
event's other fields (up to 100 headers of 8 KiB) and the record batch's framing
(docs/decisions/0017-whole-bodies-in-one-event.md).
"""

from __future__ import annotations

__all__ = ["KAFKA_MAX_MESSAGE_BYTES", "MAX_EVENT_OVERHEAD_BYTES"]

# Broker message.max.bytes and replica.fetch.max.bytes, topic max.message.bytes, producer
# max_request_size, consumer max_partition_fetch_bytes.
KAFKA_MAX_MESSAGE_BYTES = 36 * 1024 * 1024
# What an event may need beyond its largest body: headers, path, query, the batch framing.
MAX_EVENT_OVERHEAD_BYTES = 2 * 1024 * 1024
