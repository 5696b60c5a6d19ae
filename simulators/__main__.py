"""``ioc simulate``: the simulated Hanoi (or a replayed recording) publishing over MQTT."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from datetime import UTC, datetime

import orjson

from core.errors import ConfigError, IocError, ScenarioError
from core.logs import setup_logging
from core.topics import status_topic
from core.types import DISPLAY_TZ, SensorKind
from simulators.build import SimConfig, build_engine, model_classes
from simulators.config import SimSettings
from simulators.engine import FORMAT_NAMES
from simulators.publisher import FileSink, MqttSink, Sink
from simulators.replay import Replay
from simulators.runner import Progress, Runner, RunOptions, Source, format_progress
from simulators.scenario import (
    Scenario,
    load_scenario,
    parse_duration,
    parse_time,
    resolve_scenario_path,
)

logger = logging.getLogger(__name__)


def _pairs(items: list[str], what: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items:
        for part in item.split(","):
            if not part.strip():
                continue
            key, sep, value = part.partition("=")
            if not sep:
                raise ConfigError(f"{what}: expected NAME=NUMBER, got {part!r}")
            try:
                out[key.strip()] = float(value)
            except ValueError:
                raise ConfigError(f"{what}: {value!r} is not a number") from None
    return out


def parse_formats(text: str) -> dict[str, float]:
    if text.strip() in FORMAT_NAMES:
        return {text.strip(): 1.0}
    shares = _pairs([text], "--formats")
    unknown = sorted(set(shares) - set(FORMAT_NAMES))
    if unknown:
        raise ConfigError(
            f"--formats: unknown format {', '.join(unknown)}; known: {', '.join(FORMAT_NAMES)}"
        )
    if sum(shares.values()) <= 0:
        raise ConfigError("--formats: the shares add up to 0")
    return shares


def build_parser(settings: SimSettings) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ioc simulate",
        description="Simulated Hanoi sensors over MQTT (IOC_MQTT_URL), or one replayed CSV series.",
        epilog="Times: RFC 3339 (no zone = Hanoi time), now, now-2d; --until also +6h from the start.",
    )
    city = p.add_argument_group("the city")
    city.add_argument("--scenario", help="scenario file (YAML/JSON) or the name of a shipped one")
    city.add_argument(
        "--seed",
        type=int,
        help=f"seed of readings and incidents (IOC_SIM_SEED, {settings.sim_seed})",
    )
    city.add_argument(
        "--scale", type=float, help=f"sensor counts × SCALE (IOC_SIM_SCALE, {settings.sim_scale:g})"
    )
    city.add_argument(
        "--count",
        action="append",
        default=[],
        metavar="MODEL=N",
        help="sensors of one model, e.g. traffic_camera=200 (repeatable)",
    )
    city.add_argument(
        "--interval",
        action="append",
        default=[],
        metavar="MODEL=S",
        help="reporting interval in seconds of one model (repeatable)",
    )
    city.add_argument(
        "--formats", help=f"payload format shares (IOC_SIM_FORMATS, {settings.sim_formats})"
    )
    city.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE[:CLASS]",
        help="import sensor models from MODULE (repeatable)",
    )
    city.add_argument("--list-models", action="store_true", help="list the sensor models and exit")
    time_ = p.add_argument_group("time")
    time_.add_argument(
        "--start",
        help="simulated start (default: now; with --duration in accelerated runs, now − duration)",
    )
    time_.add_argument("--until", help="simulated end: a time, or +DURATION from the start")
    time_.add_argument("--duration", help="simulated length, e.g. 6h, 2d")
    pace = time_.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed",
        type=float,
        help=f"simulated seconds per wall second (IOC_SIM_SPEED, {settings.sim_speed:g})",
    )
    pace.add_argument(
        "--fast", action="store_true", help="as fast as possible (needs --until or --duration)"
    )
    out = p.add_argument_group("output")
    out.add_argument(
        "--output",
        metavar="FILE",
        help="write topic<TAB>retain<TAB>payload lines to FILE ('-': stdout) instead of MQTT",
    )
    out.add_argument(
        "--truth", metavar="FILE", help="ground truth of injected incidents (JSON lines)"
    )
    out.add_argument(
        "--stats-file", metavar="FILE", help="final counts as JSON (readings and messages sent)"
    )
    out.add_argument(
        "--progress",
        type=float,
        help=f"seconds between progress lines on stderr, 0 = none (IOC_SIM_PROGRESS_S, {settings.sim_progress_s:g})",
    )
    mq = p.add_argument_group("MQTT")
    mq.add_argument(
        "--connections",
        type=int,
        help=f"MQTT connections / gateways (IOC_SIM_CONNECTIONS, {settings.sim_connections})",
    )
    mq.add_argument(
        "--workers",
        type=int,
        help=f"processes sharing the devices, each with its own connections (IOC_SIM_WORKERS, {settings.sim_workers})",
    )
    mq.add_argument(
        "--qos", type=int, choices=(0, 1), help=f"QoS of readings (IOC_SIM_QOS, {settings.sim_qos})"
    )
    mq.add_argument(
        "--max-rate", type=float, help="at most this many readings per second (IOC_SIM_MAX_RATE)"
    )
    mq.add_argument(
        "--window",
        type=int,
        help=f"unacknowledged messages per connection (IOC_SIM_WINDOW, {settings.sim_window})",
    )
    mq.add_argument(
        "--name", help=f"names client ids and gateways (IOC_SIM_NAME, {settings.sim_name})"
    )
    mq.add_argument(
        "--id-prefix",
        help="prefix for every sensor id (IOC_SIM_ID_PREFIX), e.g. to run two cities on one broker",
    )
    rp = p.add_argument_group("replay a recording")
    rp.add_argument(
        "--replay", metavar="FILE.csv", help="replay a timestamp,value CSV as one sensor"
    )
    rp.add_argument("--sensor", help="sensor id of the replayed series")
    rp.add_argument("--metric", help="metric of the replayed series (catalogue name)")
    rp.add_argument(
        "--kind",
        default="generic",
        choices=[k.value for k in SensorKind],
        help="sensor kind (default generic)",
    )
    rp.add_argument(
        "--keep-timestamps",
        action="store_true",
        help="send the recorded timestamps instead of shifting the series to start now",
    )
    rp.add_argument(
        "--out-of-range",
        default="clamp",
        choices=("clamp", "skip"),
        help="values outside the metric's physical range",
    )
    return p


def _times(
    args: argparse.Namespace, scenario: Scenario, speed: float
) -> tuple[float, float | None]:
    now = datetime.now(UTC).timestamp()
    duration = parse_duration(args.duration) if args.duration else None
    until_arg = args.until
    if duration is None and until_arg is None and scenario.duration_s is not None:
        duration = scenario.duration_s
    start_arg = args.start if args.start is not None else scenario.start
    if start_arg is not None:
        start = parse_time(start_arg, now=now)
    elif speed > 1 and duration is not None:
        start = now - duration  # an accelerated run ends about now: timestamps never run ahead
    else:
        start = now
    until = None
    if until_arg is not None:
        until = parse_time(until_arg, base=start, now=now)
    elif duration is not None:
        until = start + duration
    if until is not None and until <= start:
        raise ConfigError("--until must be after --start")
    if speed > 1 and not math.isinf(speed) and (until is None or until > now + 300):
        logger.warning(
            "simulated time will run ahead of the wall clock at ×%g: ingest rejects readings more than "
            "IOC_MAX_FUTURE_SKEW_S in the future; start in the past (--start now-1d) or give --duration",
            speed,
        )
    return start, until


def main(argv: list[str]) -> int:
    try:
        settings = SimSettings()
    except ValueError as exc:
        print(f"ioc simulate: bad IOC_SIM_* setting: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format)
    args = build_parser(settings).parse_args(argv)
    try:
        workers = args.workers or settings.sim_workers
        if workers > 1 and not args.replay and not args.list_models:
            from simulators.workers import run_workers

            return run_workers(args, workers)
        return _run(args, settings)
    except (ConfigError, ScenarioError) as exc:
        print(f"ioc simulate: {exc}", file=sys.stderr)
        return 2
    except ConnectionError as exc:
        print(f"ioc simulate: {exc}", file=sys.stderr)
        return 1
    except IocError as exc:
        print(f"ioc simulate: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, settings: SimSettings, part: tuple[int, int] = (0, 1)) -> int:
    speed = (
        math.inf if args.fast else (args.speed if args.speed is not None else settings.sim_speed)
    )
    if speed <= 0:
        raise ConfigError("--speed must be more than 0")
    scenario = load_scenario(resolve_scenario_path(args.scenario)) if args.scenario else Scenario()
    name = args.name or settings.sim_name
    prefix = args.id_prefix if args.id_prefix is not None else settings.sim_id_prefix
    source: Source
    wills: list[str]
    client_ids: list[str]
    if args.replay:
        if not args.sensor or not args.metric:
            raise ConfigError("--replay needs --sensor and --metric")
        now = datetime.now(UTC).timestamp()
        start_at = parse_time(args.start, now=now) if args.start else None
        replay = Replay(
            args.replay,
            sensor=args.sensor,
            metric=args.metric,
            kind=SensorKind(args.kind),
            start=start_at,
            keep_timestamps=args.keep_timestamps,
            out_of_range=args.out_of_range,
        )
        source = replay
        start = replay.first
        until: float | None = replay.last + 0.001
        if args.until or args.duration:
            until = min(
                replay.last + 0.001,
                parse_time(args.until, base=start, now=now)
                if args.until
                else start + parse_duration(args.duration),
            )
        # one device on one connection: the Will is the device's own status topic
        wills = [status_topic(replay.kind, replay.sensor)]
        client_ids = [f"ioc-sim-replay-{replay.sensor}"]
    else:
        if args.fast and not (args.until or args.duration or scenario.duration_s):
            raise ConfigError("--fast needs --until or --duration")
        start, until = _times(args, scenario, speed)
        cfg = SimConfig(
            start=start,
            seed=args.seed
            if args.seed is not None
            else (scenario.seed if scenario.seed is not None else settings.sim_seed),
            scale=args.scale
            if args.scale is not None
            else (scenario.scale if scenario.scale is not None else settings.sim_scale),
            counts={
                **scenario.counts,
                **{k: int(v) for k, v in _pairs(args.count, "--count").items()},
            },
            intervals={**scenario.intervals, **_pairs(args.interval, "--interval")},
            formats=parse_formats(args.formats)
            if args.formats
            else (scenario.formats or parse_formats(settings.sim_formats)),
            connections=args.connections or settings.sim_connections,
            name=name,
            id_prefix=prefix,
            plugins=list(args.plugin),
            scenario=scenario,
            part=part,
        )
        if args.list_models:
            for mname, cls in sorted(model_classes(cfg).items()):
                print(
                    f"{mname:<16} kind={cls.kind.value:<15} every {cls.interval_s:g} s  default {cls.default_count:>5}  {', '.join(cls.metrics)}"
                )
            return 0
        engine = build_engine(cfg)
        source = engine
        wills = [status_topic(SensorKind.GENERIC, gw) for gw in engine.gateways]
        worker = f"w{part[0] + 1}-" if part[1] > 1 else ""
        client_ids = [f"ioc-sim-{name}-{prefix}{worker}{c + 1}" for c in range(engine.connections)]
        logger.info(
            "simulating %s sensors (%s) from %s, %s",
            f"{sum(engine.sensor_counts().values()):,}",
            ", ".join(f"{k} {v:,}" for k, v in engine.sensor_counts().items()),
            datetime.fromtimestamp(start, DISPLAY_TZ).isoformat(timespec="seconds"),
            "as fast as possible" if math.isinf(speed) else f"×{speed:g}",
        )
    sink: Sink
    if args.output:
        sink = FileSink(args.output)
    else:
        sink = MqttSink(
            settings.mqtt,
            client_ids,
            wills,
            qos=args.qos if args.qos is not None else settings.sim_qos,
            window=args.window or settings.sim_window,
            nodes=settings.mqtt_nodes,
        )
    progress_s = args.progress if args.progress is not None else settings.sim_progress_s
    options = RunOptions(
        start=start,
        until=until,
        speed=speed,
        max_rate=args.max_rate or settings.sim_max_rate,
        progress_s=progress_s,
        truth_path=args.truth,
        stats_path=args.stats_file,
    )
    runner = Runner(source, sink, options, on_progress=_print_progress)
    runner.install_signal_handlers()
    stats = runner.run()
    summary = {
        "readings_sent": stats.readings_sent,
        "messages_sent": stats.messages_sent,
        "readings_per_s": stats.readings_per_s,
        "messages_per_s": stats.messages_per_s,
        "unacked_at_exit": stats.unacked_at_exit,
        "stopped_by": stats.stopped_by,
    }
    print(f"ioc simulate: {orjson.dumps(summary).decode()}", file=sys.stderr)
    return 0 if stats.unacked_at_exit == 0 else 1


PROGRESS_PREFIX = ""  # "[w2] " in a worker process


def _print_progress(p: Progress) -> None:
    print(PROGRESS_PREFIX + format_progress(p), file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
