"""Stateless randomness: a pure function of (key, stream, counter), with sane distributions."""

from __future__ import annotations

import numpy as np

from simulators import noise


def test_same_inputs_same_numbers_and_streams_differ() -> None:
    keys = noise.keys_of(1, [f"s{i}" for i in range(100)])
    c = np.arange(100, dtype=np.int64)
    a = noise.normal(keys, 5, c)
    assert np.array_equal(a, noise.normal(keys.copy(), 5, c.copy()))
    assert not np.allclose(a, noise.normal(keys, 6, c))
    assert not np.allclose(a, noise.normal(noise.keys_of(2, [f"s{i}" for i in range(100)]), 5, c))


def test_a_value_depends_on_its_own_sensor_only() -> None:
    """Adding sensors to a city must not change the others' readings."""
    ids = [f"cam-{i:05d}" for i in range(50)]
    small = noise.normal(noise.keys_of(3, ids[:10]), 9, 1234)
    big = noise.normal(noise.keys_of(3, ids), 9, 1234)
    assert np.array_equal(small, big[:10])


def test_distributions() -> None:
    keys = np.array([noise.key_of("k")], dtype=np.uint64)
    c = np.arange(200_000, dtype=np.int64)
    u = noise.uniform(keys, 1, c)
    z = noise.normal(keys, 1, c)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.01
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1.0) < 0.01
    assert np.all(np.isfinite(z))


def test_smooth_noise_is_continuous_and_unit_variance() -> None:
    keys = np.array([noise.key_of("s")], dtype=np.uint64)
    t = np.arange(0, 86400 * 200, 60.0)
    s = noise.smooth(keys, 2, t, 3600.0)
    assert abs(s.std() - 1.0) < 0.1
    steps = np.abs(np.diff(s))
    assert steps.max() < 0.3  # a minute is a small fraction of the hour scale
    assert np.array_equal(s[:100], noise.smooth(keys, 2, t[:100], 3600.0))
