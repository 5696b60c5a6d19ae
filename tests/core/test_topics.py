"""The topic scheme."""

from __future__ import annotations

import pytest

from core.errors import TopicError
from core.topics import Channel, alert_topic, data_topic, parse_sensor_topic, shared
from core.types import SensorKind, Severity


def test_round_trip() -> None:
    t = data_topic(SensorKind.TRAFFIC_CAMERA, "cam-0001")
    assert t == "ioc/v1/traffic_camera/cam-0001/data"
    p = parse_sensor_topic(t)
    assert (p.kind, p.sensor, p.channel) == (SensorKind.TRAFFIC_CAMERA, "cam-0001", Channel.DATA)
    assert alert_topic(Severity.CRITICAL, "water_level") == "ioc/v1/alerts/critical/water_level"
    assert shared("ingest", "ioc/v1/+/+/data") == "$share/ingest/ioc/v1/+/+/data"


@pytest.mark.parametrize(
    "topic",
    [
        "ioc/v1/traffic_camera/cam/data/x",
        "ioc/v2/noise/n1/data",
        "ioc/v1/toaster/t1/data",
        "ioc/v1/noise/bad id/data",
        "ioc/v1/noise/n1/other",
        "",
        "ioc/v1/noise//data",
    ],
)
def test_rejects(topic: str) -> None:
    with pytest.raises(TopicError):
        parse_sensor_topic(topic)
    with pytest.raises(TopicError):
        data_topic("noise", "bad/id")
