"""``ioc simulate`` as a command: options, determinism of its output, errors."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

import simulators.__main__ as cli

ARGS = ["--start", "2026-11-23T07:00:00+07:00", "--duration", "15m", "--fast", "--progress", "0"]
COUNTS = ["--count", "traffic_camera=40,air_quality=4,water_level=4,weather=2,noise=2"]


@pytest.fixture(autouse=True)
def _keep_pytest_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "setup_logging", lambda *a, **k: None)


def test_the_same_seed_writes_byte_identical_files(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert cli.main([*ARGS, *COUNTS, "--seed", "9", "--output", str(a)]) == 0
    assert cli.main([*ARGS, *COUNTS, "--seed", "9", "--output", str(b), "--connections", "1"]) == 0
    assert cli.main([*ARGS, *COUNTS, "--seed", "10", "--output", str(c)]) == 0
    data = [x for x in a.read_bytes().splitlines() if b"/data\t" in x]
    assert len(data) > 600
    assert data == [x for x in b.read_bytes().splitlines() if b"/data\t" in x]
    assert data != [x for x in c.read_bytes().splitlines() if b"/data\t" in x]


def test_stats_and_truth_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stats, truth = tmp_path / "s.json", tmp_path / "t.jsonl"
    counts = "traffic_camera=150,air_quality=8,water_level=14,weather=10,noise=10"
    code = cli.main(
        [
            *ARGS,
            "--count",
            counts,
            "--output",
            str(tmp_path / "o"),
            "--stats-file",
            str(stats),
            "--truth",
            str(truth),
            "--scenario",
            "incidents",
            "--duration",
            "3h",
        ]
    )
    assert code == 0
    s = orjson.loads(stats.read_bytes())
    assert s["sensors"]["traffic_camera"] == 150 and s["seed"] == 2026  # the scenario's seed
    kinds = [orjson.loads(x)["kind"] for x in truth.read_text().splitlines()]
    assert {
        "traffic_incident",
        "pollution_episode",
        "flash_flood",
        "fire_weather",
        "sensor_fault",
    } <= set(kinds)
    summary = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        summary.startswith("ioc simulate: ")
        and orjson.loads(summary[14:])["readings_sent"] == s["readings_sent"]
    )


def test_formats_option(tmp_path: Path) -> None:
    out = tmp_path / "o"
    assert cli.main([*ARGS, *COUNTS, "--formats", "fiware", "--output", str(out)]) == 0
    data = [x.split(b"\t")[2] for x in out.read_bytes().splitlines() if b"/data\t" in x]
    assert all(p.startswith(b'{"id":"urn:ngsi-ld:') for p in data)


def test_list_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--list-models"]) == 0
    out = capsys.readouterr().out
    for name in ("traffic_camera", "air_quality", "water_level", "weather", "noise"):
        assert name in out
    assert "1873" in out


def test_replay_from_the_command_line(tmp_path: Path) -> None:
    csv = tmp_path / "nab.csv"
    csv.write_text(
        "timestamp,value\n2014-04-10 00:00:00,61.2\n2014-04-10 00:05:00,62.0\n2014-04-10 00:10:00,64.5\n"
    )
    out = tmp_path / "o"
    args = [
        "--replay",
        str(csv),
        "--sensor",
        "nab-1",
        "--metric",
        "noise",
        "--fast",
        "--output",
        str(out),
        "--progress",
        "0",
    ]
    assert cli.main(args) == 0
    lines = out.read_bytes().splitlines()
    assert [x.split(b"\t")[0] for x in lines] == [
        b"ioc/v1/generic/nab-1/meta",
        b"ioc/v1/generic/nab-1/status",
    ] + [b"ioc/v1/generic/nab-1/data"] * 3 + [b"ioc/v1/generic/nab-1/status"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fast"], "--fast needs --until or --duration"),
        (["--count", "lamp=3", "--output", "-"], "unknown sensor model(s) lamp"),
        (["--formats", "native=0"], "add up to 0"),
        (["--replay", "x.csv"], "--replay needs --sensor and --metric"),
        (["--scenario", "no-such-scenario"], "no such file"),
        (["--start", "2026-11-23", "--until", "2026-11-22"], "--until must be after --start"),
    ],
)
def test_mistakes_exit_2_with_a_message(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(args) == 2
    assert message in capsys.readouterr().err


def test_a_bad_scenario_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 1\nincidents:\n  - kind: flash_flood\n    at: +1h\n    duration: soon\n")
    assert cli.main(["--scenario", str(bad), "--output", "-"]) == 2
    assert (
        "bad.yaml: line 5: incidents[0].duration: 'soon' is not a duration"
        in capsys.readouterr().err
    )


def test_no_broker_is_exit_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IOC_MQTT_URL", "mqtt://127.0.0.1:9")  # discard port: nothing listens
    assert cli.main([*ARGS, *COUNTS]) == 1
    assert "cannot reach the broker" in capsys.readouterr().err


def test_workers_split_the_devices_and_send_exactly_the_same_readings(tmp_path: Path) -> None:
    one, two, stats = tmp_path / "one", tmp_path / "two", tmp_path / "stats.json"
    assert cli.main([*ARGS, *COUNTS, "--output", str(one)]) == 0
    assert (
        cli.main(
            [*ARGS, *COUNTS, "--output", str(two), "--workers", "2", "--stats-file", str(stats)]
        )
        == 0
    )
    parts = [Path(f"{two}.w1"), Path(f"{two}.w2")]
    data_one = sorted(x for x in one.read_bytes().splitlines() if b"/data\t" in x)
    per_worker = [[x for x in p.read_bytes().splitlines() if b"/data\t" in x] for p in parts]
    assert all(len(w) > 100 for w in per_worker)  # both did a share
    assert sorted(per_worker[0] + per_worker[1]) == data_one
    merged = orjson.loads(stats.read_bytes())
    assert merged["workers"] == 2 and merged["messages_by_channel"]["data"] == len(data_one)
    assert merged["sensors"]["traffic_camera"] == 40
