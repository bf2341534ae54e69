"""Arrow arrays built straight from numpy buffers and JSON rows.

``pyarrow.array`` asks pandas whether its argument is a pandas object, and that first question
imports pandas: about 0.2 s, a tenth of a small ``build-lpd`` run, spent on a library the stage
never uses. These helpers make the same arrays without the question: numbers from their numpy
buffer (zero-copy), strings from offsets and bytes, and whole tables of rows through pyarrow's
own JSON reader with an explicit schema.
"""

from __future__ import annotations

import io
import json
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.json as pa_json


def numeric(values: np.ndarray, type: pa.DataType) -> pa.Array:
    """A null-free fixed-width Arrow array of ``type`` over ``values`` (cast to its numpy dtype)."""
    arr = np.ascontiguousarray(values, dtype=type.to_pandas_dtype())
    return pa.Array.from_buffers(type, len(arr), [None, pa.py_buffer(arr)])


def strings(values: Sequence[str]) -> pa.Array:
    """A null-free Arrow ``string`` array of ``values``."""
    encoded = [v.encode() for v in values]
    offsets = np.zeros(len(encoded) + 1, np.int32)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return pa.Array.from_buffers(pa.string(), len(encoded),
                                 [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))])


def lists(offsets: np.ndarray, values: np.ndarray, type: pa.ListType) -> pa.ListArray:
    """A null-free array of the list ``type``: row ``i`` is ``values[offsets[i]:offsets[i + 1]]``
    (the exact type, item nullability included: a table of that schema then needs no cast)."""
    return pa.ListArray.from_arrays(numeric(offsets, pa.int32()), numeric(values, type.value_type), type=type)


def table_from_rows(rows: Sequence[dict], schema: pa.Schema) -> pa.Table:
    """The rows (dicts of JSON values; missing keys are nulls) as a table of exactly ``schema``.

    The rows travel as JSON lines through pyarrow's JSON reader, which parses numbers back to
    the same doubles (shortest round-trip text) and checks every value against the schema.
    """
    names = schema.names
    lines = "\n".join(json.dumps({k: r.get(k) for k in names}, allow_nan=False) for r in rows)
    options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
    table = pa_json.read_json(io.BytesIO(lines.encode() or b"{}"), parse_options=options)
    if not rows:
        table = table.slice(0, 0)
    table = table.select(names).combine_chunks()
    if not table.schema.equals(schema):  # the reader takes the schema as given; never seen to differ
        raise TypeError(f"rows parsed to {table.schema}, not {schema}")
    return table
