"""Step 1 of a batch: fetched Kafka records into the sink's batch, and the undecodable ones.

Pure: no I/O. The events of the types a ``ColumnarSink`` takes as columns are decoded straight
into one list per field (``Batch.columns``); every other event becomes a ``Record``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aiokafka.structs import ConsumerRecord

from consumers.deadletter import Poison
from consumers.sink import Batch, EventColumns, Record
from schemas import Codec, CodecError, EventType


def decode_batch(
    codec: Codec,
    pending: Sequence[ConsumerRecord[bytes, bytes]],
    columnar: Mapping[EventType, tuple[str, ...]],
) -> tuple[Batch, Poison]:
    """The sink's batch and the undecodable records. The events of the types in ``columnar`` go
    into ``Batch.columns`` (those fields only), every other into a Record."""
    good: list[Record] = []
    poison: Poison = []
    columns = codec.columns(columnar) if columnar else None
    origins: dict[EventType, list[ConsumerRecord[bytes, bytes]]] = {t: [] for t in columnar}
    for raw in pending:
        value = raw.value or b""
        try:
            if columns is not None:
                taken = columns.append(value)
                if taken is not None:
                    origins[taken].append(raw)
                    continue
            event = codec.decode(value)
        except CodecError as exc:
            poison.append((raw, f"undecodable: {exc}"))
            continue
        headers = tuple(raw.headers or ())
        good.append(
            Record(raw.topic, raw.partition, raw.offset, raw.key, raw.value, event, headers)
        )
    if columns is None:
        return Batch.of(good), poison
    as_columns = {
        kind: EventColumns(kind, fields, columns.columns[kind], origins[kind])
        for kind, fields in columnar.items()
    }
    return Batch.of(good, as_columns), poison
