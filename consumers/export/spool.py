"""The dataset export's spool: pass 1's records on disk, an Arrow IPC stream, read back by pass 2.

Written in batches of ``BATCH_ROWS`` rows (the last one shorter) whatever sizes the records are
appended in, so the shards cut from it are the same bytes however the engine batched its output.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import pyarrow as pa

from consumers.export.records import SCHEMA

BATCH_ROWS = 2000
# The records and the leaf each came from (for the audit row; not in the dataset).
SPOOL_SCHEMA = SCHEMA.append(pa.field("source_request_id", pa.string()))


class SpoolWriter:
    """Appends record batches of ``SPOOL_SCHEMA`` to ``path``; a context manager."""

    def __init__(self, path: Path) -> None:
        self._sink = pa.OSFile(str(path), "wb")
        self._out = pa.ipc.new_stream(self._sink, SPOOL_SCHEMA)
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0

    def append(self, batch: pa.RecordBatch) -> None:
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        if self._pending_rows >= BATCH_ROWS:
            self._write(least=BATCH_ROWS)

    def _write(self, *, least: int) -> None:
        table = pa.Table.from_batches(self._pending, schema=SPOOL_SCHEMA)
        while table.num_rows and table.num_rows >= least:
            head = table.slice(0, BATCH_ROWS).combine_chunks()
            self._out.write_batch(head.to_batches()[0])
            table = table.slice(BATCH_ROWS)
        self._pending = table.to_batches()
        self._pending_rows = table.num_rows

    def close(self) -> None:
        """Write what is pending and close the file (the spool is complete)."""
        self._write(least=1)
        self._out.close()
        self._sink.close()

    def __enter__(self) -> SpoolWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()
        else:  # an incomplete spool is written again from the start on resume
            self._out.close()
            self._sink.close()


def read_spool(path: Path) -> pa.ipc.RecordBatchStreamReader:
    # Read, not memory-mapped: the pages of a mapped spool stay in the process's resident set
    # once touched, so reading a large spool back would grow it to the spool's size.
    return pa.ipc.open_stream(pa.OSFile(str(path), "rb"))
