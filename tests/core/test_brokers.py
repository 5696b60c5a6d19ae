"""IOC_MQTT_URL with several nodes: parsing, the order of attempts, and real failover."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from core.brokers import BrokerNodes, follow
from core.errors import ConfigError
from core.settings import MqttAddress, Settings, parse_mqtt_url, parse_mqtt_urls
from tests.support.servers import MosquittoServer, free_port


def test_one_url_is_one_node() -> None:
    (only,) = parse_mqtt_urls("mqtts://u:p%40ss@broker.example:8884")
    assert only == MqttAddress("broker.example", 8884, "u", "p@ss", True)


def test_a_list_keeps_its_order_and_shares_credentials() -> None:
    nodes = parse_mqtt_urls("mqtt://ioc:secret@10.0.0.1:1883, mqtt://10.0.0.2 ,mqtt://x:y@10.0.0.3")
    assert [(n.host, n.port) for n in nodes] == [
        ("10.0.0.1", 1883),
        ("10.0.0.2", 1883),
        ("10.0.0.3", 1883),
    ]
    assert [(n.username, n.password) for n in nodes] == [
        ("ioc", "secret"),
        ("ioc", "secret"),
        ("x", "y"),
    ]
    settings = Settings(mqtt_url="mqtt://10.0.0.1:1883,mqtt://10.0.0.2:1884")
    assert settings.mqtt == MqttAddress("10.0.0.1", 1883, None, None, False)
    assert [n.port for n in settings.mqtt_nodes] == [1883, 1884]


@pytest.mark.parametrize(
    ("urls", "reason"),
    [
        ("", "empty"),
        ("mqtt://a:1883,,mqtt://b:1883", "empty entry"),
        ("mqtt://a:1883,mqtts://b:8883", "mixes"),
        ("mqtt://a:1883,http://b", "must start with"),
        ("mqtt://a:1883,mqtt://b:99999", "bad port"),
    ],
)
def test_bad_lists_are_refused_with_a_reason(urls: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        parse_mqtt_urls(urls)


def test_a_single_address_parser_refuses_a_list() -> None:
    with pytest.raises(ConfigError, match="comma-separated"):
        parse_mqtt_url("mqtt://a:1883,mqtt://b:1883")


def test_secrets_stay_out_of_errors() -> None:
    with pytest.raises(ConfigError) as err:
        parse_mqtt_urls("mqtt://u:hunter2@a:1883,mqtts://u:hunter2@b:8883")
    assert "hunter2" not in str(err.value)


def test_attempts_go_round_the_nodes() -> None:
    a, b, c = (MqttAddress(h, 1883, None, None, False) for h in "abc")
    nodes = BrokerNodes([a, b, c])
    assert [nodes.next_attempt().host for _ in range(5)] == ["a", "b", "c", "a", "b"]
    assert nodes.current.host == "b"
    assert nodes.describe(b) == "b:1883 (node 2 of 3)"
    with pytest.raises(ConfigError):
        BrokerNodes([])


def _client(nodes: BrokerNodes, connected: threading.Event) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"failover-{uuid.uuid4().hex[:8]}",
        clean_session=False,
        protocol=mqtt.MQTTv311,
    )
    client.reconnect_delay_set(1, 1)

    def on_connect(*args: object) -> None:
        connected.set()

    def on_disconnect(*args: object) -> None:
        connected.clear()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    follow(client, nodes)
    return client


@pytest.mark.mqtt
def test_a_dead_first_node_is_skipped_and_a_lost_node_left(
    make_broker: Callable[..., MosquittoServer],
) -> None:
    dead = free_port()  # nothing listens here
    first, second = make_broker(), make_broker()
    nodes = BrokerNodes(parse_mqtt_urls(f"mqtt://127.0.0.1:{dead},{first.url},{second.url}"))
    connected = threading.Event()
    client = _client(nodes, connected)
    client.connect_async("127.0.0.1", dead, keepalive=5)
    client.loop_start()
    try:
        assert connected.wait(15), "never reached the live node"
        assert client.port == first.port
        first.kill()  # the node we are on dies: paho reconnects, to the next node
        time.sleep(0.2)
        deadline = time.monotonic() + 15
        while not (connected.is_set() and client.port == second.port):
            assert time.monotonic() < deadline, f"still on port {client.port}"
            time.sleep(0.05)
    finally:
        client.disconnect()
        client.loop_stop()


def test_settings_refuse_a_bad_list_without_echoing_the_password() -> None:
    with pytest.raises(ValueError, match="mixes") as err:
        Settings(mqtt_url="mqtt://u:hunter2@a:1883,mqtts://b:8883")
    assert "hunter2" not in str(err.value)
