"""docker-compose.scale.yml (two of every part, an EMQX 5.8 cluster, nginx), checked for real.

``docker-compose config`` validates and resolves the file; the checks then read what
compose would run.  No container is started (there is no Docker engine in CI).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.settings import parse_mqtt_urls

ROOT = Path(__file__).resolve().parents[1]
FILE = ROOT / "docker-compose.scale.yml"
COMPOSE = shutil.which("docker-compose")


def _compose(*args: str) -> subprocess.CompletedProcess[str]:
    assert COMPOSE is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    return subprocess.run(
        [COMPOSE, "-f", str(FILE), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    if COMPOSE is None:
        pytest.skip("docker-compose is not installed")
    proc = _compose("--profile", "simulator", "config")
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr
    loaded: dict[str, Any] = yaml.safe_load(proc.stdout)["services"]
    return loaded


def _of(services: dict[str, Any], command: str) -> dict[str, Any]:
    return {n: s for n, s in services.items() if s.get("command") == ["ioc", command]}


def test_an_apache_licensed_emqx_cluster(services: dict[str, Any]) -> None:
    nodes = {n: s for n, s in services.items() if s["image"].startswith("emqx/emqx:")}
    assert len(nodes) >= 2
    for s in nodes.values():
        version = tuple(int(p) for p in s["image"].split(":")[1].split(".")[:2])
        assert (5, 0) <= version <= (5, 8), s["image"]  # 5.9 and later: BSL
        env = s["environment"]
        assert env["EMQX_CLUSTER__DISCOVERY_STRATEGY"] == "static"
        assert env["EMQX_NODE__NAME"].split("@")[1] in env["EMQX_CLUSTER__STATIC__SEEDS"]
        assert env["EMQX_AUTHORIZATION__NO_MATCH"] == "deny"
        assert "healthcheck" in s and s["restart"] == "unless-stopped"
    seeds = {s["environment"]["EMQX_CLUSTER__STATIC__SEEDS"] for s in nodes.values()}
    assert len(seeds) == 1, "every node knows the same seeds"


def test_two_of_every_part_each_with_every_broker_node(services: dict[str, Any]) -> None:
    emqx = {n for n, s in services.items() if s["image"].startswith("emqx/emqx:")}
    parts = {c: _of(services, c) for c in ("ingest", "analytics", "api", "simulate")}
    assert [len(parts[c]) for c in ("ingest", "analytics", "api")] == [2, 2, 2]
    firsts = set()
    for group in parts.values():
        for name, s in group.items():
            nodes = parse_mqtt_urls(s["environment"]["IOC_MQTT_URL"])
            assert {n.host for n in nodes} == emqx, name
            assert nodes[0].username and nodes[1].password == nodes[0].password
            firsts.add(nodes[0].host)
            assert set(emqx) <= set(s["depends_on"]), name
    assert firsts == emqx, "the parts' first nodes spread over the cluster"
    ingest = [s["environment"] for s in parts["ingest"].values()]
    assert len({e["IOC_INGEST_CLIENT_ID"] for e in ingest}) == 2
    assert {e["IOC_INGEST_SHARED_GROUP"] for e in ingest} == {"ingest"}
    analytics = [s["environment"]["IOC_ANALYTICS_PARTITION"] for s in parts["analytics"].values()]
    assert sorted(analytics) == ["0/2", "1/2"]


def test_the_apis_behind_one_proxy(services: dict[str, Any]) -> None:
    apis = set(_of(services, "api"))
    proxy = services["proxy"]
    assert set(proxy["depends_on"]) == apis
    assert not any("ports" in services[a] for a in apis), "only the proxy is published"
    mounts = [
        (v["source"], v["target"]) if isinstance(v, dict) else tuple(v.split(":")[:2])
        for v in proxy["volumes"]
    ]
    source = next(src for src, target in mounts if target.startswith("/etc/nginx/"))
    conf = Path(source).read_text()
    upstream = re.search(r"upstream ioc_api \{(.*?)\}", conf, re.S)
    assert upstream is not None
    assert set(re.findall(r"server ([\w-]+):8000", upstream.group(1))) == apis
    ws = re.search(r"location /ws/ \{(.*?)\}", conf, re.S)
    assert ws is not None and "proxy_set_header Upgrade $http_upgrade" in ws.group(1)
    assert "$request_uri" not in conf and "$args" not in conf, "tokens stay out of the log"


def test_emqx_grants_what_mosquitto_grants() -> None:
    acl = (ROOT / "deploy" / "emqx" / "acl.conf").read_text()
    mosq = (ROOT / "deploy" / "mosquitto" / "acl").read_text()
    users = set(re.findall(r"^user (\S+)$", mosq, re.M))
    assert users == set(re.findall(r'\{username, "([^"]+)"\}', acl))
    entry = (ROOT / "deploy" / "emqx" / "entrypoint.sh").read_text()
    assert users == set(re.findall(r"add_user ([\w-]+) ", entry))
    assert acl.rstrip().endswith("{deny, all}.")
    assert "ioc/v1/+/${username}" not in acl, "a device could publish alerts"


def test_every_variable_is_documented() -> None:
    names = set(re.findall(r"\$\{(IOC_[A-Z0-9_]+)", FILE.read_text()))
    example = (ROOT / "deploy" / "env.example").read_text()
    docs = (ROOT / "docs" / "operations.md").read_text() + (
        ROOT / "docs" / "scaling.md"
    ).read_text()
    assert not {n for n in names if not re.search(rf"^#? ?{n}=", example, re.M)}
    assert not {n for n in names if f"`{n}`" not in docs}
