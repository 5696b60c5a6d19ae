"""``ioc bench simulate``: how fast the simulator publishes to a real local Mosquitto.

Starts its own Mosquitto on a free port, then measures in one run:

1. baseline: a plain paho client (its own manual loop, one ``send`` per packet)
   publishing pre-encoded camera payloads as fast as it can, QoS 1, the same
   acknowledgement window: what MQTT from Python costs without the simulator;
2. generation + encoding alone (no broker): the simulator's own cost;
3. the whole simulator (fast mode, simulated Hanoi) through the broker, with
   1 and 2 connections;

and prints readings/s and messages/s with ratios against the baseline.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks import save_results
from core.codecs import encode_native
from core.settings import MqttAddress
from core.types import DISPLAY_TZ
from simulators.build import SimConfig, build_engine
from simulators.publisher import FileSink, MqttSink
from simulators.runner import Runner, RunOptions
from tests.support.servers import find_mosquitto, private_mosquitto

TARGET_READINGS_PER_S = 50_000
START = "2026-11-23T07:00:00"  # a Monday at the morning peak: every camera busy


@dataclass(slots=True)
class Result:
    name: str
    readings: int
    messages: int
    seconds: float
    cpu_s: float = 0.0  # CPU seconds of this process (0: not measured)
    broker_cpu_s: float = 0.0  # CPU seconds of Mosquitto during the measurement

    @property
    def readings_per_s(self) -> float:
        return self.readings / self.seconds if self.seconds > 0 else 0.0

    @property
    def readings_per_cpu_s(self) -> float:
        return self.readings / self.cpu_s if self.cpu_s > 0 else 0.0

    @property
    def readings_per_broker_cpu_s(self) -> float:
        return self.readings / self.broker_cpu_s if self.broker_cpu_s > 0 else 0.0

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Broker:
    addr: MqttAddress
    pid: int

    def cpu_s(self) -> float:
        """CPU seconds the broker has used (Linux /proc; 0 elsewhere)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def mosquitto() -> Iterator[Broker]:
    """A throw-away Mosquitto on a free port (no persistence: we measure the publisher)."""
    if find_mosquitto() is None:
        raise SystemExit(
            "ioc bench simulate: mosquitto is not installed (apt-get install mosquitto)"
        )
    with private_mosquitto(max_queued=0) as server:
        assert server.proc is not None
        yield Broker(MqttAddress("127.0.0.1", server.port, None, None, False), server.proc.pid)


def baseline(addr: MqttAddress, n: int, window: int) -> Result:
    """paho alone: ``n`` pre-encoded 8-reading camera messages, QoS 1."""
    payload = encode_native(
        [
            (
                1_795_400_000.0,
                {
                    "vehicle_count": 80,
                    "count_motorbike": 64,
                    "count_car": 12,
                    "count_bus": 1,
                    "count_truck": 3,
                    "speed": 31.5,
                    "occupancy": 41.2,
                    "queue_length": 55,
                },
            )
        ]
    )
    topics = [f"ioc/v1/traffic_camera/bench-{i:05d}/data" for i in range(2000)]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-baseline")
    client.max_inflight_messages_set(0)  # as the simulator: paho's inflight scan off, our window
    acked = [0]

    def on_publish(c: mqtt.Client, userdata: object, mid: int, rc: object, props: object) -> None:
        acked[0] += 1

    client.on_publish = on_publish
    client.connect(addr.host, addr.port)
    while not client.is_connected():
        client.loop(0.05)
    t0 = time.perf_counter()
    c0 = time.process_time()
    for i in range(n):
        client.publish(topics[i % 2000], payload, qos=1)
        while i + 1 - acked[0] >= window:
            client.loop(0.05)
    while acked[0] < n:
        client.loop(0.05)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    client.disconnect()
    return Result("baseline: paho alone, pre-encoded", acked[0] * 8, acked[0], seconds, cpu)


def _config(scale: float, connections: int) -> SimConfig:
    from simulators.scenario import parse_time

    return SimConfig(
        start=parse_time(START), seed=1, scale=scale, connections=connections, entry_points=False
    )


def generate_only(scale: float, sim_s: float) -> Result:
    cfg = _config(scale, 1)
    engine = build_engine(cfg)
    sink = FileSink(os.devnull)
    opts = RunOptions(
        start=cfg.start, until=cfg.start + sim_s, speed=float("inf"), progress_s=0, announce=False
    )
    c0 = time.process_time()
    stats = Runner(engine, sink, opts).run()
    cpu = time.process_time() - c0
    data = stats.messages_by_channel["data"]
    return Result("generate + encode, no broker", stats.readings_sent, data, stats.wall_s, cpu)


def simulate(
    addr: MqttAddress, scale: float, sim_s: float, connections: int, window: int
) -> Result:
    cfg = _config(scale, connections)
    engine = build_engine(cfg)
    ids = [f"bench-sim-{connections}-{c}" for c in range(connections)]
    sink = MqttSink(
        addr, ids, [f"ioc/v1/generic/{g}/status" for g in engine.gateways], window=window
    )
    opts = RunOptions(start=cfg.start, until=cfg.start + sim_s, speed=float("inf"), progress_s=0)
    c0 = time.process_time()
    stats = Runner(engine, sink, opts).run()
    cpu = time.process_time() - c0  # includes registering the devices: a little pessimistic
    data = stats.messages_by_channel["data"]
    name = f"simulator → Mosquitto, {connections} connection(s)"
    return Result(name, stats.readings_sent, data, stats.wall_s, cpu)


def simulate_workers(
    addr: MqttAddress, scale: float, sim_s: float, workers: int, window: int
) -> Result:
    """``ioc simulate --workers N`` as a real command; rates from its own stats (start-up excluded)."""
    with tempfile.TemporaryDirectory(prefix="ioc-bench-") as tmp:
        stats_file = Path(tmp) / "stats.json"
        env = {
            **os.environ,
            "IOC_MQTT_URL": f"mqtt://{addr.host}:{addr.port}",
            "IOC_LOG_LEVEL": "WARNING",
        }
        cmd = [
            sys.executable,
            "-m",
            "simulators",
            "--fast",
            "--start",
            START,
            "--duration",
            f"{sim_s:g}s",
        ]
        cmd += [
            "--scale",
            f"{scale:g}",
            "--seed",
            "1",
            "--workers",
            str(workers),
            "--connections",
            "1",
        ]
        cmd += [
            "--window",
            str(window),
            "--progress",
            "0",
            "--stats-file",
            str(stats_file),
            "--name",
            f"bench-w{workers}",
        ]
        subprocess.run(
            cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        stats = orjson.loads(stats_file.read_bytes())
    data = int(stats["messages_by_channel"]["data"])
    return Result(
        f"simulator → Mosquitto, {workers} processes",
        int(stats["readings_sent"]),
        data,
        float(stats["wall_s"]),
    )


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="ioc bench simulate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--scale", type=float, default=1.0, help="city size (1 = Hanoi: 2,013 sensors)")
    p.add_argument("--minutes", type=float, default=20.0, help="simulated minutes per measurement")
    p.add_argument(
        "--window", type=int, default=1000, help="unacknowledged messages per connection"
    )
    p.add_argument(
        "--quick", action="store_true", help="a short run to check that the benchmark works"
    )
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = p.parse_args(argv)
    sim_s = (2.0 if args.quick else args.minutes) * 60.0
    cpus = os.cpu_count() or 1
    print(
        f"ioc bench simulate: scale {args.scale:g}, {sim_s / 60:g} simulated minutes at the {START} peak (Hanoi time), {cpus} CPUs"
    )
    results: list[Result] = []
    with mosquitto() as broker:
        addr = broker.addr

        def measured(result: Callable[[], Result]) -> Result:
            b0 = broker.cpu_s()
            r = result()
            r.broker_cpu_s = broker.cpu_s() - b0
            return r

        gen = generate_only(args.scale, sim_s)
        per_msg = gen.readings / max(1, gen.messages)
        base = measured(lambda: baseline(addr, gen.messages, args.window))
        results += [base, gen]
        for conns in (1, 2):
            results.append(
                measured(functools.partial(simulate, addr, args.scale, sim_s, conns, args.window))
            )
        if not args.quick:
            results.append(
                measured(lambda: simulate_workers(addr, args.scale, sim_s, 2, args.window))
            )
    print(
        f"{'measurement':<40} {'readings':>10} {'messages':>9} {'s':>7} {'readings/s':>11}"
        f" {'msgs/s':>9} {'× baseline':>10} {'readings/CPU-s':>14} {'broker':>9}"
    )
    for r in results:
        ratio = r.messages_per_s / base.messages_per_s if base.messages_per_s else 0.0
        cpu = f"{r.readings_per_cpu_s:,.0f}" if r.cpu_s else "-"
        bcpu = f"{r.readings_per_broker_cpu_s:,.0f}" if r.broker_cpu_s else "-"
        print(
            f"{r.name:<40} {r.readings:>10,} {r.messages:>9,} {r.seconds:>7.2f} {r.readings_per_s:>11,.0f}"
            f" {r.messages_per_s:>9,.0f} {ratio:>10.2f} {cpu:>14} {bcpu:>9}"
        )
    load = os.getloadavg()[0]
    print(
        f"load average at the end: {load:.1f} on {cpus} CPUs (wall-clock figures fall with other load)"
    )
    one = results[2]
    if one.cpu_s and one.broker_cpu_s:
        # the simulator and the broker each on a core of their own: the slower one sets the pace
        projected = min(one.readings_per_cpu_s, one.readings_per_broker_cpu_s)
        print(
            f"CPU cost: simulator {1e6 / one.readings_per_cpu_s:.1f} µs, broker {1e6 / one.readings_per_broker_cpu_s:.1f} µs"
            f" a reading; with a core each and no other load: ~{projected:,.0f} readings/s"
        )
    best = max(results[2:], key=lambda r: r.readings_per_s)
    verdict = "meets" if best.readings_per_s >= TARGET_READINGS_PER_S else "MISSES"
    print(
        f"best: {best.readings_per_s:,.0f} readings/s ({per_msg:.1f} readings a message) — {verdict} the "
        f"{TARGET_READINGS_PER_S:,} readings/s goal; messages/s are {best.messages_per_s / base.messages_per_s:.0%} of bare paho"
    )
    doc = {
        "benchmark": "simulate",
        "cpus": cpus,
        "scale": args.scale,
        "simulated_s": sim_s,
        "start_hanoi": START,
        "timezone": str(DISPLAY_TZ),
        "load_average": os.getloadavg()[0],
        "results": [
            asdict(r)
            | {
                "readings_per_s": r.readings_per_s,
                "messages_per_s": r.messages_per_s,
                "readings_per_cpu_s": r.readings_per_cpu_s,
                "readings_per_broker_cpu_s": r.readings_per_broker_cpu_s,
            }
            for r in results
        ],
        "target_readings_per_s": TARGET_READINGS_PER_S,
        "best_readings_per_s": best.readings_per_s,
    }
    save_results("simulators", doc)
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
