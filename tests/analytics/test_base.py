"""The analytics contracts."""

from __future__ import annotations

import numpy as np

from analytics.engine.base import rounds


def test_rounds_keep_series_order_and_uniqueness() -> None:
    slots = np.array([3, 1, 3, 3, 2, 1], dtype=np.int64)
    rs = rounds(slots)
    assert [r.tolist() for r in rs] == [[0, 1, 4], [2, 5], [3]]
    for r in rs:
        assert len(set(slots[r].tolist())) == len(r)
    assert rounds(np.array([], dtype=np.int64)) == []
