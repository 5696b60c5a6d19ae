"""Stateless randomness: numbers that are a pure function of (seed, sensor, stream, time).

Readings must not depend on when or in which order the simulator happens to
compute them, so instead of a stateful generator every random number is a hash
(splitmix64) of a per-sensor key, a stream name and a counter such as the
reading's timestamp in milliseconds.  All functions work on numpy arrays.
"""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
UIntArray = npt.NDArray[np.uint64]
IntArray = npt.NDArray[np.int64]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_S32 = np.uint64(32)
_LOW32 = np.uint64(0xFFFFFFFF)
_INV53 = 1.0 / float(1 << 53)
_INV32 = 1.0 / float(1 << 32)
_TWO_PI = 2.0 * np.pi


def key_of(*parts: object) -> int:
    """A stable 64-bit key for any tuple of printable parts (seed, sensor id, stream...)."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


def index_keys(base: int, n: int) -> UIntArray:
    """``n`` keys derived from one base key: ``key(i)`` for i in 0..n-1, vectorised."""
    return mix(np.arange(n, dtype=np.uint64) ^ np.uint64(base))


def keys_of(seed: int, ids: list[str]) -> UIntArray:
    """One key per sensor id."""
    return np.array([key_of(seed, i) for i in ids], dtype=np.uint64)


def mix(x: UIntArray) -> UIntArray:
    """splitmix64 finaliser on an array (wrapping uint64 arithmetic)."""
    z = np.atleast_1d(np.asarray(x, dtype=np.uint64)) + _GOLDEN
    z ^= z >> _S30
    z *= _M1
    z ^= z >> _S27
    z *= _M2
    z ^= z >> _S31
    return z


def stream_keys(keys: UIntArray, stream: int) -> UIntArray:
    """Per-sensor keys of one stream; reuse them with the ``*_k`` functions."""
    s = np.uint64(stream & 0xFFFFFFFFFFFFFFFF)
    return mix(np.atleast_1d(np.asarray(keys, dtype=np.uint64)) ^ s)


def _hash(skeys: UIntArray, counter: IntArray | int) -> UIntArray:
    c = np.atleast_1d(np.asarray(counter, dtype=np.int64)).astype(np.uint64)
    return mix(skeys + c)


def uniform_k(skeys: UIntArray, counter: IntArray | int) -> FloatArray:
    return (_hash(skeys, counter) >> _S11).astype(np.float64) * _INV53


def normal_k(skeys: UIntArray, counter: IntArray | int) -> FloatArray:
    """Box-Muller on the two 32-bit halves of one hash."""
    h = _hash(skeys, counter)
    u1 = ((h >> _S32).astype(np.float64) + 0.5) * _INV32
    u2 = (h & _LOW32).astype(np.float64) * _INV32
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(_TWO_PI * u2)


def smooth_k(skeys: UIntArray, t: FloatArray, scale_s: float) -> FloatArray:
    """Smooth noise of unit variance that wanders over about ``scale_s`` seconds.

    Normal values at knots every ``scale_s`` seconds, joined by a smoothstep; the
    same (key, stream, t) always gives the same value.
    """
    x = np.asarray(t, dtype=np.float64) / scale_s
    k0 = np.floor(x)
    w = x - k0
    w = w * w * (3.0 - 2.0 * w)
    ki = k0.astype(np.int64)
    a = normal_k(skeys, ki)
    b = normal_k(skeys, ki + 1)
    # interpolating two independent N(0,1) shrinks the variance mid-way; undo it
    return np.asarray((a * (1.0 - w) + b * w) / np.sqrt((1.0 - w) ** 2 + w**2), dtype=np.float64)


def uniform(keys: UIntArray, stream: int, counter: IntArray | int) -> FloatArray:
    """Uniform numbers in [0, 1), one per key (broadcast against ``counter``)."""
    return uniform_k(stream_keys(keys, stream), counter)


def normal(keys: UIntArray, stream: int, counter: IntArray | int) -> FloatArray:
    """Standard normal numbers, one per key (broadcast against ``counter``)."""
    return normal_k(stream_keys(keys, stream), counter)


def smooth(keys: UIntArray, stream: int, t: FloatArray, scale_s: float) -> FloatArray:
    return smooth_k(stream_keys(keys, stream), t, scale_s)


def stream_id(name: str) -> int:
    """A stream number for a readable stream name."""
    return key_of("stream", name)


def millis(t: FloatArray) -> IntArray:
    """Timestamps in whole milliseconds: the counter for per-reading noise."""
    return np.rint(np.asarray(t, dtype=np.float64) * 1000.0).astype(np.int64)
