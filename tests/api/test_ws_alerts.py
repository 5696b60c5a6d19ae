"""/ws/alerts: hello and live events, resume with no gap and no duplicate, filters, heartbeats,
slow-client closure (4008) without delaying a fast client, auth close codes, reader recovery."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from api.config import ApiSettings
from tests.api.conftest import LiveApi, auth, insert_alert

pytestmark = [pytest.mark.db]


def ws_connect(live: LiveApi, token: str, **params: Any) -> ClientConnection:
    query = httpx.QueryParams({"token": token, **params})
    return connect(f"{live.ws_url}/ws/alerts?{query}", open_timeout=10, compression=None)


def frames(ws: ClientConnection, timeout: float = 5.0) -> Iterator[dict[str, Any]]:
    """Yield the decoded frames that arrive within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            raw = ws.recv(timeout=left)
        except TimeoutError:
            return
        yield json.loads(raw)


def collect_alerts(
    ws: ClientConnection, until: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0
) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not until(got):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(
                f"timed out with {len(got)} alert frames: {[g['seq'] for g in got]}"
            )
        try:
            doc = json.loads(ws.recv(timeout=left))
        except TimeoutError:
            continue
        if doc["type"] == "alert":
            got.append(doc)
    return got


def event_seqs(conn: psycopg.Connection[Any], after: int) -> list[int]:
    return [
        r[0]
        for r in conn.execute("SELECT seq FROM alert_events WHERE seq > %s ORDER BY seq", (after,))
    ]


def close_code(ws: ClientConnection, timeout: float = 10.0) -> int | None:
    try:
        while True:
            ws.recv(timeout=timeout)
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None


def test_hello_then_live_events(
    live_api: LiveApi, tokens: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    before = insert_alert(db)
    head = event_seqs(db, 0)[-1]
    hub = live_api.app.state.alert_hub
    # the hub reads the log after the commit's notification: wait until it has this event
    wait_until(lambda: live_api.call(lambda: hub.head) >= head)
    with ws_connect(live_api, tokens["operator"]) as ws:
        hello = json.loads(ws.recv(timeout=5))
        assert hello == {"type": "hello", "seq": head}
        # live: the hub writes to this idle client's socket directly
        wait_until(
            lambda: live_api.call(lambda: [s.direct is not None for s in hub.subscribers]) == [True]
        )
        aid = insert_alert(db, severity="warning")
        (ev,) = collect_alerts(ws, lambda g: len(g) >= 1)
        assert ev["seq"] == head + 1 and ev["action"] == "opened" and ev["actor"] == "system"
        assert ev["alert"]["id"] == aid and ev["alert"]["severity"] == "warning"
        assert ev["alert"]["opened_at"].endswith("Z") and ev["time"].endswith("Z")
        assert before != aid


def test_resume_replays_exactly_the_missed_events_then_live(
    live_api: LiveApi, tokens: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    with ws_connect(live_api, tokens["operator"]) as ws:
        json.loads(ws.recv(timeout=5))  # hello
        a = insert_alert(db)
        (first,) = collect_alerts(ws, lambda g: len(g) >= 1)
    last = first["seq"]
    # while the client is away: a new alert, an update, an acknowledgement, a comment
    b = insert_alert(db, sensor="aq-1", kind="air_quality", metric="pm25")
    db.execute("UPDATE alerts SET occurrences = occurrences + 1 WHERE id = %s", (a,))
    with httpx.Client(base_url=live_api.url, headers=auth(tokens["operator"])) as op:
        assert op.post(f"/api/v1/alerts/{a}/acknowledge", json={"note": "seen"}).status_code == 200
        assert op.post(f"/api/v1/alerts/{b}/comments", json={"note": "hmm"}).status_code == 200
    missed = event_seqs(db, last)
    assert len(missed) == 4
    # a writer keeps raising alerts while the client resumes: replay and live overlap
    stop = threading.Event()

    def writer() -> None:
        with psycopg.connect(db.info.dsn, autocommit=True) as conn:
            while not stop.is_set():
                insert_alert(conn, sensor="live")
                time.sleep(0.005)

    t = threading.Thread(target=writer)
    t.start()
    try:
        with ws_connect(live_api, tokens["operator"], since=last) as ws:
            time.sleep(0.5)
            stop.set()
            t.join()
            expected = event_seqs(db, last)
            got = collect_alerts(ws, lambda g: len(g) >= len(expected))
            extra = [f for f in frames(ws, timeout=0.5) if f["type"] == "alert"]
    finally:
        stop.set()
        t.join()
    seqs = [g["seq"] for g in got + extra]
    assert seqs == expected, "gap, duplicate or disorder"
    assert [g["action"] for g in got[:4]] == ["opened", "updated", "acknowledged", "commented"]
    assert got[2]["actor"] == "operator-user" and got[2]["note"] == "seen"
    assert got[3]["note"] == "hmm" and got[3]["alert"]["id"] == b
    assert len(expected) > 10  # live events did arrive during the replay


@pytest.mark.parametrize("attempt", range(3))
def test_resume_race_under_continuous_writes(
    live_api: LiveApi, tokens: dict[str, str], db: psycopg.Connection[Any], attempt: int
) -> None:
    """Connect with since=0 while alerts are committed in bursts: every seq exactly once."""
    stop = threading.Event()

    def writer() -> None:
        with psycopg.connect(db.info.dsn, autocommit=True) as conn:
            i = 0
            while not stop.is_set():
                with conn.transaction():  # bursts of several events per commit
                    for _ in range(1 + i % 4):
                        insert_alert(conn, sensor=f"race-{attempt}")
                i += 1
                time.sleep(0.002 * (attempt + 1))

    t = threading.Thread(target=writer)
    t.start()
    try:
        time.sleep(0.2)
        with ws_connect(live_api, tokens["analyst"], since=0) as ws:
            time.sleep(0.4)
            stop.set()
            t.join()
            expected = event_seqs(db, 0)
            got = collect_alerts(ws, lambda g: len(g) >= len(expected), timeout=20)
            got += [f for f in frames(ws, timeout=0.5) if f["type"] == "alert"]
    finally:
        stop.set()
        t.join()
    assert [g["seq"] for g in got] == expected


def test_filters_apply_to_live_and_replayed_events(
    live_api: LiveApi, tokens: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    wanted = dict(severity="critical", kind="water_level", area="Cầu Giấy", lat=21.01, lon=105.80)
    insert_alert(db, **wanted)  # seq 1: matches
    insert_alert(db, **{**wanted, "severity": "warning"})  # wrong severity
    insert_alert(db, **{**wanted, "area": "Hoàn Kiếm"})  # wrong area
    insert_alert(db, **{**wanted, "kind": "air_quality", "metric": "pm25"})  # wrong kind
    insert_alert(db, **{**wanted, "lat": 21.25, "lon": 105.85})  # outside the box
    params = {
        "since": 0,
        "severity": "critical",
        "kind": "water_level",
        "area": "Cầu Giấy",
        "bbox": "105.7,20.9,105.9,21.1",
    }
    with ws_connect(live_api, tokens["engineer"], **params) as ws:
        replayed = collect_alerts(ws, lambda g: len(g) >= 1)
        insert_alert(db, **{**wanted, "severity": "info"})
        live_ok = insert_alert(db, **wanted)
        live = collect_alerts(ws, lambda g: len(g) >= 1)
        rest = [f for f in frames(ws, timeout=0.5) if f["type"] == "alert"]
    assert [g["seq"] for g in replayed] == [1]
    assert [g["alert"]["id"] for g in live] == [live_ok]
    assert rest == []
    # several values of one filter: severity=warning&severity=critical (or comma separated)
    with ws_connect(live_api, tokens["engineer"], since=0, severity="warning,critical") as ws:
        got = collect_alerts(ws, lambda g: len(g) >= 6)
    assert {g["alert"]["severity"] for g in got} == {"warning", "critical"}


def test_heartbeats_carry_the_head(
    live_api: LiveApi, tokens: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    insert_alert(db, severity="info")
    with ws_connect(live_api, tokens["admin"], severity="critical") as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "hello"
        insert_alert(db, severity="info")  # filtered out, but the head moves on
        time.sleep(0.3)
        beats = [f for f in frames(ws, timeout=3) if f["type"] == "heartbeat"]
    assert beats, "no heartbeat within 3 s (period 1 s)"
    assert beats[-1]["seq"] == event_seqs(db, 0)[-1]
    assert beats[-1]["time"].endswith("Z")


def test_many_events_in_one_transaction_arrive_in_order(
    live_api: LiveApi, tokens: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    with ws_connect(live_api, tokens["operator"]) as ws:
        head = json.loads(ws.recv(timeout=5))["seq"]
        with db.transaction():
            for i in range(1200):
                insert_alert(db, sensor=f"burst-{i % 10}")
        got = collect_alerts(ws, lambda g: len(g) >= 1200, timeout=30)
    assert [g["seq"] for g in got] == list(range(head + 1, head + 1201))


@pytest.mark.parametrize(
    ("token", "params", "code"),
    [
        (None, {}, 4401),
        ("wrong", {}, 4401),
        ("operator", {"since": "-1"}, 4400),
        ("operator", {"since": "NaN"}, 4400),
        ("operator", {"since": "99999999999999999999"}, 4400),
        ("operator", {"severity": "apocalyptic"}, 4400),
        ("operator", {"kind": "volcano"}, 4400),
        ("operator", {"bbox": "1,2,3"}, 4400),
        ("operator", {"sinec": "5"}, 4400),
        ("operator", [("since", "1"), ("since", "2")], 4400),
        ("operator", {"since": str(10**15)}, 4409),
        (None, {"since": str(10**15), "bogus": "1"}, 4401),  # the token first
    ],
)
def test_refusals_close_with_codes(
    shared_api: LiveApi,
    shared_tokens: dict[str, str],
    token: str | None,
    params: dict[str, str] | list[tuple[str, str]],
    code: int,
) -> None:
    query = list(params.items()) if isinstance(params, dict) else list(params)
    if token is not None:
        query.append(("token", shared_tokens.get(token, token)))
    with connect(
        f"{shared_api.ws_url}/ws/alerts?{httpx.QueryParams(query)}", open_timeout=10
    ) as ws:
        assert close_code(ws) == code


def test_revoked_token_and_header_auth(
    live_api: LiveApi, tokens: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    with connect(
        f"{live_api.ws_url}/ws/alerts", additional_headers=auth(tokens["analyst"]), open_timeout=10
    ) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "hello"
    db.execute("UPDATE api_tokens SET revoked_at = now() WHERE name = 'analyst-user'")
    with ws_connect(live_api, tokens["analyst"]) as ws:
        assert close_code(ws) == 4401


def test_token_in_a_subprotocol_keeps_it_out_of_the_url(
    shared_api: LiveApi, shared_tokens: dict[str, str]
) -> None:
    url = f"{shared_api.ws_url}/ws/alerts"
    offer = [Subprotocol("ioc.v1"), Subprotocol(f"ioc.bearer.{shared_tokens['operator']}")]
    with connect(url, subprotocols=offer, open_timeout=10) as ws:
        assert ws.subprotocol == "ioc.v1"
        assert json.loads(ws.recv(timeout=5))["type"] == "hello"
    # a refusal picks the sub-protocol too, so that a browser sees the close code
    bad = [Subprotocol("ioc.v1"), Subprotocol("ioc.bearer.wrong")]
    with connect(url, subprotocols=bad, open_timeout=10) as ws:
        assert ws.subprotocol == "ioc.v1"
        assert close_code(ws) == 4401


@pytest.fixture
def slow_api(api_settings: ApiSettings, make_api: Callable[[ApiSettings], LiveApi]) -> LiveApi:
    return make_api(
        api_settings.model_copy(update={"api_ws_queue": 16, "api_ws_close_timeout_s": 60.0})
    )


def test_slow_client_is_closed_with_4008_and_fast_client_is_not_delayed(
    slow_api: LiveApi, tokens: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    # the slow client never reads until the end (so the kernel buffers fill up)
    query = httpx.QueryParams({"token": tokens["operator"]})
    slow = connect(
        f"{slow_api.ws_url}/ws/alerts?{query}",
        compression=None,
        max_queue=1,
        ping_interval=None,  # it does not read, so it would not see its pongs either
    )
    fast = connect(f"{slow_api.ws_url}/ws/alerts?{query}", compression=None, max_queue=4096)
    try:
        assert json.loads(fast.recv(timeout=5))["type"] == "hello"
        hub = slow_api.app.state.alert_hub
        assert slow_api.call(lambda: len(hub.subscribers)) == 2
        big = {"trace": "x" * 250_000}  # fat events fill the slow client's socket quickly
        n = 60
        got: list[dict[str, Any]] = []
        reader = threading.Thread(
            target=lambda: got.extend(collect_alerts(fast, lambda g: len(g) >= n, timeout=60))
        )
        reader.start()  # the fast client reads as events come
        start = time.monotonic()
        for i in range(n):
            insert_alert(db, sensor=f"fat-{i}", evidence=big)
        reader.join()
        fast_took = time.monotonic() - start
        assert [g["alert"]["sensor"] for g in got] == [f"fat-{i}" for i in range(n)]
        # the slow one was dropped from the fan-out while the fast one carried on
        assert slow_api.call(lambda: len(hub.subscribers)) == 1
        # now it reads: whatever was already in flight, then the close frame
        assert close_code(slow, timeout=30) == 4008
        assert slow.close_reason.startswith("too slow")
        # and the fast client is still live
        aid = insert_alert(db, sensor="after")
        (after,) = collect_alerts(fast, lambda g: len(g) >= 1)
        assert after["alert"]["id"] == aid
        print(f"fast client got {n} fat events in {fast_took:.2f} s while the slow one stalled")
    finally:
        fast.close()
        slow.close()


def test_clients_that_never_read_are_closed_with_4008_before_any_ping_timeout(
    api_settings: ApiSettings,
    make_api: Callable[[ApiSettings], LiveApi],
    tokens: dict[str, str],
    db: psycopg.Connection[Any],
) -> None:
    """A queue far from full, but frames stuck in the sockets: the send deadline closes them."""
    live = make_api(
        api_settings.model_copy(
            update={
                "api_ws_queue": 100_000,
                "api_ws_send_timeout_s": 1.0,
                "api_ws_close_timeout_s": 10.0,
            }
        )
    )
    slow_closed = metric("ioc_api_ws_slow_closed_total", stream="alerts")
    query = httpx.QueryParams({"token": tokens["operator"]})
    url = f"{live.ws_url}/ws/alerts?{query}"
    stuck = [connect(url, compression=None, max_queue=1, ping_interval=None) for _ in range(4)]
    fast = connect(url, compression=None, max_queue=4096)
    try:
        assert json.loads(fast.recv(timeout=5))["type"] == "hello"
        hub = live.app.state.alert_hub
        wait_until(lambda: live.call(lambda: len(hub.subscribers)) == 5)
        for ws in stuck:
            assert json.loads(ws.recv(timeout=5))["type"] == "hello"  # then it stops reading
        big = {"trace": "x" * 250_000}
        n = 40
        start = time.monotonic()
        for i in range(n):
            insert_alert(db, sensor=f"stuck-{i}", evidence=big)
        got = collect_alerts(fast, lambda g: len(g) >= n, timeout=60)
        assert [g["alert"]["sensor"] for g in got] == [f"stuck-{i}" for i in range(n)]
        # dropped within ~the send deadline, long before uvicorn's 20 s ping timeout
        wait_until(lambda: live.call(lambda: len(hub.subscribers)) == 1, timeout=15)
        took = time.monotonic() - start
        assert took < 15, took
        for ws in stuck:  # they read again: what was in flight, then the close frame
            assert close_code(ws, timeout=30) == 4008
            assert ws.close_reason.startswith("too slow: a frame waited more than 1 s")
        assert metric("ioc_api_ws_slow_closed_total", stream="alerts") == slow_closed + 4
    finally:
        fast.close()
        for ws in stuck:
            ws.close()


def metric(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.allow_error_logs
def test_reader_survives_a_database_restart(
    make_pg: Callable[[], Any], make_api: Callable[[ApiSettings], LiveApi], mqtt_url: str
) -> None:
    from api.models import Role
    from api.tokens import create as create_token
    from core.db import migrate

    pg = make_pg()
    dsn = pg.dsn("postgres")
    migrate(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        token = create_token(conn, "op", Role.OPERATOR, "test")
    live = make_api(
        ApiSettings(database_url=dsn, mqtt_url=mqtt_url, api_ws_poll_s=0.5, api_pool_min=1)  # type: ignore[arg-type]
    )
    with ws_connect(live, token) as ws:
        json.loads(ws.recv(timeout=5))
        pg.kill()
        pg.start()
        with psycopg.connect(dsn, autocommit=True) as conn:
            aid = insert_alert(conn, sensor="after-restart")
        (ev,) = collect_alerts(ws, lambda g: len(g) >= 1, timeout=20)
    assert ev["alert"]["id"] == aid
    # pooled connections from before the restart are checked, not handed out broken
    for _ in range(3):
        assert httpx.get(f"{live.url}/api/v1/me", headers=auth(token)).status_code == 200
