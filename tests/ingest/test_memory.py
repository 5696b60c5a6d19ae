"""Oversized messages leave no memory behind in a real ``python -m ingest`` process."""

from __future__ import annotations

import gc

import pytest

from benchmarks.ingest_memory import run
from core.codecs import Limits
from ingest.inbound import decode_message

pytestmark = [pytest.mark.mqtt, pytest.mark.db, pytest.mark.slow]


def test_a_rejected_message_holds_no_frames() -> None:
    limits = Limits(max_payload_bytes=1024, max_entries=10, max_future_skew_s=300, max_age_s=1e6)
    msg = decode_message(
        "ioc/v1/air_quality/m-1/data", b"x" * 4096, mid=1, qos=1, gen=0, now=0.0, limits=limits
    )
    assert msg.error is not None
    assert msg.error.reason == "oversized"
    # no traceback: the raising frames (and so ``msg`` and its payload) are not kept in a cycle
    assert msg.error.__traceback__ is None
    assert msg.error.__context__ is None
    assert not gc.get_referrers(msg)


def test_twenty_10_mib_messages_leave_the_ingestor_at_its_idle_size() -> None:
    result = run(count=20, mib=10)
    assert result["ratio"] <= 1.2, result
    assert result["dead_letter_bytes_stored"] <= 20 * 64 * 1024
