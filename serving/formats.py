"""The response formats of a rows request, chosen by the Accept header, and their encoders."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import json
from collections.abc import Iterator

import pyarrow as pa

JSON = "application/json"
NDJSON = "application/x-ndjson"
CSV = "text/csv"
ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"
MEDIA_TYPES = (JSON, NDJSON, CSV, ARROW, PARQUET)  # the first is the default (no Accept, */*)
NDJSON_CHUNK_ROWS = 1000


def negotiate(accept: str | None) -> str | None:
    """The served type the Accept header prefers (highest q, then the client's order); None: none fits."""
    if not accept or not accept.strip():
        return JSON
    ranked = []
    for position, item in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in item.split(";"))
        q = next((_q(p[2:]) for p in params if p.startswith("q=")), 1.0)
        match = _match(media.lower())
        if match and q > 0:
            ranked.append((-q, position, match))
    return min(ranked)[2] if ranked else None


def _q(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


def _match(media: str) -> str | None:
    if media in MEDIA_TYPES:
        return media
    if media in ("*/*", "application/*"):
        return JSON
    if media == "text/*":
        return CSV
    return None


def _json_default(value):
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal | bytes):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def json_rows(table: pa.Table) -> bytes:
    return json.dumps(table.to_pylist(), default=_json_default, allow_nan=False).encode()


def ndjson_chunks(table: pa.Table) -> Iterator[bytes]:
    """One JSON object a line, NDJSON_CHUNK_ROWS rows per chunk of the streamed body."""
    for batch in table.to_batches(max_chunksize=NDJSON_CHUNK_ROWS):
        lines = (json.dumps(row, default=_json_default, allow_nan=False) for row in batch.to_pylist())
        yield ("\n".join(lines) + "\n").encode()


def csv_bytes(table: pa.Table) -> bytes:
    import pyarrow.csv

    sink = io.BytesIO()
    pyarrow.csv.write_csv(table, sink)
    return sink.getvalue()


def arrow_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def parquet_bytes(table: pa.Table) -> bytes:
    import pyarrow.parquet

    sink = pa.BufferOutputStream()
    pyarrow.parquet.write_table(table, sink)
    return sink.getvalue().to_pybytes()


ENCODERS = {JSON: json_rows, CSV: csv_bytes, ARROW: arrow_bytes, PARQUET: parquet_bytes}  # NDJSON streams
