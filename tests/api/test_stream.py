"""Unit tests of the fan-out pieces with plain fakes: filters, bounded queues, event encoding."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import orjson

from api.params import BBox
from api.stream import AlertFilter, AlertHub, AlertSubscriber, Event, Frame, FrameKind, encode_event

SNAPSHOT = {
    "id": 5, "sensor": "wl-1", "metric": "water_level", "rule": "r", "detector": "d",
    "kind": "water_level", "alert_class": "threshold", "severity": "warning", "status": "open",
    "message": "m", "value": 1.5, "expected_low": None, "expected_high": None, "score": None,
    "evidence": {"a": [1, 2]}, "lat": 21.0, "lon": 105.8, "area": "Cầu Giấy",
    # to_jsonb() writes times in the writer's session zone
    "opened_at": "2026-11-22T07:00:00.5+07:00", "updated_at": "2026-11-22T07:01:00+07:00",
    "acknowledged_at": None, "acknowledged_by": None, "resolved_at": None, "resolved_by": None,
    "occurrences": 2,
}  # fmt: skip


def event(**over: object) -> Event:
    base = dict(seq=1, severity="warning", kind="water_level", area="Cầu Giấy", lat=21.0, lon=105.8)
    base.update(over)
    return Event(text="{}", **base)  # type: ignore[arg-type]


def test_encode_event_normalises_times_to_utc() -> None:
    row = {"seq": 9, "alert_id": 5, "time": datetime(2026, 11, 22, 0, 1, tzinfo=UTC),
           "action": "updated", "actor": "system", "note": None, "snapshot": SNAPSHOT}  # fmt: skip
    ev = encode_event(row)
    doc = orjson.loads(ev.text)
    assert doc["type"] == "alert" and doc["seq"] == 9 and doc["action"] == "updated"
    assert doc["time"] == "2026-11-22T00:01:00Z"
    assert doc["alert"]["opened_at"] == "2026-11-22T00:00:00.500000Z"
    assert doc["alert"]["evidence"] == {"a": [1, 2]}
    assert (ev.severity, ev.kind, ev.area) == ("warning", "water_level", "Cầu Giấy")


def test_filters() -> None:
    assert AlertFilter().matches(event())
    f = AlertFilter(severities=frozenset({"critical"}))
    assert not f.matches(event()) and f.matches(event(severity="critical"))
    assert not AlertFilter(kinds=frozenset({"noise"})).matches(event())
    assert AlertFilter(areas=frozenset({"Cầu Giấy", "Ba Đình"})).matches(event())
    box = AlertFilter(bbox=BBox(105.7, 20.9, 105.9, 21.1))
    assert box.matches(event()) and not box.matches(event(lat=None, lon=None))
    assert not box.matches(event(lon=106.5))


def test_overflow_drops_the_client_from_the_fan_out() -> None:
    async def run() -> tuple[int, bool, int]:
        hub = AlertHub("postgresql://unused")
        slow = AlertSubscriber(2, AlertFilter())
        fast = AlertSubscriber(100, AlertFilter())
        hub.register(slow)
        hub.register(fast)
        for seq in range(1, 6):
            row = {"seq": seq, "alert_id": 5, "time": datetime.now(UTC), "action": "updated",
                   "actor": "system", "note": None, "snapshot": SNAPSHOT}  # fmt: skip
            hub._dispatch(row, datetime.now(UTC))
            fast.pending.clear()  # the fast one keeps up
        return len(hub.subscribers), slow.overflowed.is_set(), hub.head

    subscribers, overflowed, head = asyncio.run(run())
    assert (subscribers, overflowed, head) == (1, True, 5)


def test_offer_after_overflow_is_ignored() -> None:
    async def run() -> int:
        sub = AlertSubscriber(1, AlertFilter())
        for seq in range(3):
            sub.offer(Frame(FrameKind.EVENT, seq, "x"))
        return sub.qsize()

    assert asyncio.run(run()) == 1


def test_deliver_writes_directly_only_when_nothing_is_ahead() -> None:
    async def run() -> None:
        sub = AlertSubscriber(10, AlertFilter())
        written: list[bytes] = []
        socket_takes = [True]

        def direct(data: bytes) -> bool:
            if socket_takes[0]:
                written.append(data)
            return socket_takes[0]

        sub.direct = direct
        frames = [Frame(FrameKind.EVENT, seq, f'{{"seq":{seq}}}') for seq in range(1, 6)]
        # the sender is not waiting yet (replaying, say): queued
        sub.deliver(frames[0])
        assert written == [] and sub.qsize() == 1
        assert (await sub.next()).seq == 1
        sub.last = 1
        waiting = asyncio.ensure_future(sub.next())
        await asyncio.sleep(0)  # the sender now waits for work: written straight away
        sub.deliver(frames[1])
        assert written == [frames[1].wire] and sub.last == 2 and sub.qsize() == 0
        # the socket does not take data: queued, and what follows queues behind it
        socket_takes[0] = False
        sub.deliver(frames[2])
        socket_takes[0] = True
        sub.deliver(frames[3])
        assert [f.seq for f in sub.pending] == [3, 4]
        assert (await waiting).seq == 3
        assert [f.seq for f in sub.pending] == [4]
        assert len(written) == 1
        # a frame at or below what was sent is never written again
        sub.pending.clear()
        waiting = asyncio.ensure_future(sub.next())
        await asyncio.sleep(0)
        sub.deliver(frames[0])
        assert len(written) == 1 and (await waiting).seq == 1  # the sender drops it
        # the bytes are a complete, unmasked text frame
        assert frames[1].wire == b"\x81" + bytes([len('{"seq":2}')]) + b'{"seq":2}'

    asyncio.run(run())
