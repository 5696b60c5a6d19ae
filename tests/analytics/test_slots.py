"""The engine's one per-slot state: growth, fill values, blocks, and both checkpoint forms."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.engine.slots import SlotArrays

SPEC = {
    "n": (0, np.int64, 0),
    "last": (0, np.float64, np.nan),
    "profile": (3, np.float32, 1.5),
    "ring": ((2, 4), np.int64, -1),
}


def test_new_slots_start_at_their_fill_and_old_ones_keep_their_values() -> None:
    s = SlotArrays(SPEC)
    assert s.capacity == 0
    s.ensure(2)
    assert s.capacity >= 3
    s["n"][2] = 7
    s["ring"][1, 1, 3] = 9
    s.ensure(40)
    assert s.capacity >= 41
    assert s["n"][2] == 7 and s["ring"][1, 1, 3] == 9
    assert (s["n"][3:] == 0).all() and np.isnan(s["last"]).all()
    assert s["profile"].shape == (s.capacity, 3) and (s["profile"] == 1.5).all()
    assert s["ring"].shape == (s.capacity, 2, 4) and (s["ring"] == -1).sum() == s["ring"].size - 1
    before = s.capacity
    s.ensure(before - 1)  # room already: nothing moves
    assert s.capacity == before


def test_full_state_and_head_both_restore() -> None:
    s = SlotArrays(SPEC)
    s.ensure(4)
    s["n"][:5] = np.arange(5)
    s["profile"][4] = [1.0, 2.0, 3.0]
    full = SlotArrays(SPEC)
    full.set_state(s.get_state())
    assert full.capacity == s.capacity
    assert all(np.array_equal(full[k], s[k], equal_nan=True) for k in SPEC)
    head = SlotArrays(SPEC)
    head.set_state(s.head(5))
    assert head.capacity == 5
    assert head["n"].tolist() == [0, 1, 2, 3, 4]
    assert head["profile"][4].tolist() == [1.0, 2.0, 3.0]
    head.ensure(5)
    assert head["n"][5] == 0 and head["profile"][5].tolist() == [1.5, 1.5, 1.5]


def test_a_column_the_checkpoint_lacks_starts_at_its_fill() -> None:
    s = SlotArrays(SPEC)
    s.set_state({"n": np.array([3, 4]), "last": np.array([1.0, 2.0])})
    assert s.capacity == 2
    assert (s["profile"] == 1.5).all() and s["ring"].shape == (2, 2, 4)
    s.set_state({"n": np.array([3, 4]), "profile": np.arange(6.0)})  # a block stored flat
    assert s["profile"].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]


def test_a_damaged_checkpoint_is_refused() -> None:
    s = SlotArrays(SPEC)
    with pytest.raises(ValueError, match="shape"):
        s.set_state({"n": np.array([1, 2]), "last": np.array([1.0])})
    with pytest.raises(ValueError, match="shape"):
        s.set_state({"capacity": 2, "n": np.array([1, 2]), "profile": np.zeros((2, 4))})
    with pytest.raises(ValueError, match="none of these"):
        s.set_state({"other": np.zeros(2)})
    with pytest.raises(ValueError, match="too large"):
        s.ensure(1 << 31)
