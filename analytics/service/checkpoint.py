"""Checkpoints: a safe binary codec for stage state and the ``analytics_state`` table.

The codec takes what ``get_state()`` returns (dicts with string keys, lists,
tuples, strings, numbers, booleans, ``None`` and numpy arrays, nested) and
writes JSON for the structure plus an ``.npz`` (``allow_pickle=False``) for the
arrays, so a checkpoint read back from the database can never run code.
Tuples come back as lists.
"""

from __future__ import annotations

import io
import logging
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson
import psycopg

logger = logging.getLogger(__name__)

_MAGIC = b"IOCS1"
_ND = "__nd__"


class StateCodecError(TypeError):
    """A state holds something the codec cannot store safely."""


def encode_state(state: Any) -> bytes:
    arrays: dict[str, np.ndarray[Any, Any]] = {}

    def walk(obj: Any) -> Any:
        if obj is None or isinstance(obj, bool | str):
            return obj
        if isinstance(obj, int | float):
            return obj
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            if obj.dtype == object:
                raise StateCodecError("numpy arrays of objects cannot be checkpointed")
            key = f"a{len(arrays)}"
            arrays[key] = obj
            return {_ND: key}
        if isinstance(obj, Mapping):
            out: dict[str, Any] = {}
            for k, v in obj.items():
                if not isinstance(k, str):
                    raise StateCodecError(f"state keys must be strings, got {type(k).__name__}")
                if k == _ND:
                    raise StateCodecError(f"{_ND!r} is reserved")
                out[k] = walk(v)
            return out
        if isinstance(obj, list | tuple):
            return [walk(v) for v in obj]
        raise StateCodecError(f"cannot checkpoint a {type(obj).__name__}")

    doc = orjson.dumps(walk(state))
    buf = io.BytesIO()
    if arrays:
        np.savez(buf, allow_pickle=False, **arrays)
    return _MAGIC + struct.pack("<I", len(doc)) + doc + buf.getvalue()


def decode_state(data: bytes) -> Any:
    if not data.startswith(_MAGIC):
        raise StateCodecError("not an analytics checkpoint")
    (n,) = struct.unpack_from("<I", data, len(_MAGIC))
    start = len(_MAGIC) + 4
    doc = orjson.loads(data[start : start + n])
    rest = data[start + n :]
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    if rest:
        with np.load(io.BytesIO(rest), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}

    def walk(obj: Any) -> Any:
        if isinstance(obj, dict):
            if len(obj) == 1 and _ND in obj:
                return arrays[obj[_ND]]
            return {k: walk(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [walk(v) for v in obj]
        return obj

    return walk(doc)


def save(conn: psycopg.Connection[Any], states: Mapping[str, Any]) -> int:
    """Write each named state in one transaction; return the bytes written."""
    rows = []
    for name, state in states.items():
        try:
            rows.append((name, encode_state(state)))
        except StateCodecError as exc:
            logger.warning("state %s is not checkpointed: %s", name, exc)
    return save_encoded(conn, rows)


def save_encoded(conn: psycopg.Connection[Any], rows: list[tuple[str, bytes]]) -> int:
    """Write (name, encoded state) rows in one transaction; return the bytes written."""
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO analytics_state (name, state, updated_at) VALUES (%s, %s, now())"
            " ON CONFLICT (name) DO UPDATE SET state = excluded.state, updated_at = now()",
            rows,
        )
    return sum(len(b) for _, b in rows)


def load(conn: psycopg.Connection[Any], names: list[str]) -> dict[str, Any]:
    """Read the named states that exist; a damaged one is logged and left out."""
    out: dict[str, Any] = {}
    for name, blob in conn.execute(
        "SELECT name, state FROM analytics_state WHERE name = ANY(%s)", (names,)
    ):
        try:
            out[name] = decode_state(bytes(blob))
        except (StateCodecError, ValueError, KeyError, OSError) as exc:
            logger.warning("checkpoint %s cannot be read, starting it cold: %s", name, exc)
    return out
