"""The MQTT topic scheme: one versioned tree, the topic names the sensor.

ioc/v1/<kind>/<sensor_id>/data     readings (QoS 1)
ioc/v1/<kind>/<sensor_id>/meta     retained self-registration
ioc/v1/<kind>/<sensor_id>/status   retained online/offline (the device's Last Will)
ioc/v1/alerts/<severity>/<kind>    alert events, relayed from the committed alert_events log
ioc/v1/incidents/<severity>/<hazard>  incident events, relayed from the same log
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from core.errors import TopicError
from core.i18n import message
from core.types import SensorKind, Severity

PREFIX = "ioc/v1"
SENSOR_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


class Channel(StrEnum):
    DATA = "data"
    META = "meta"
    STATUS = "status"


@dataclass(frozen=True, slots=True)
class SensorTopic:
    kind: SensorKind
    sensor: str
    channel: Channel


_KINDS = {k.value: k for k in SensorKind}
_CHANNELS = {c.value: c for c in Channel}


def _topic_error(key: str, **fields: str) -> TopicError:
    """A ``TopicError`` whose text is the catalogue's ``key`` (English as its message)."""
    return TopicError(message("en", key, fields), key=key, **fields)


def sensor_topic(kind: SensorKind | str, sensor: str, channel: Channel | str) -> str:
    if not SENSOR_ID_RE.match(sensor):
        raise _topic_error("topic.sensor_id", sensor=repr(sensor)[:80])
    return f"{PREFIX}/{SensorKind(kind).value}/{sensor}/{Channel(channel).value}"


def data_topic(kind: SensorKind | str, sensor: str) -> str:
    return sensor_topic(kind, sensor, Channel.DATA)


def meta_topic(kind: SensorKind | str, sensor: str) -> str:
    return sensor_topic(kind, sensor, Channel.META)


def status_topic(kind: SensorKind | str, sensor: str) -> str:
    return sensor_topic(kind, sensor, Channel.STATUS)


def alert_topic(severity: Severity | str, kind: SensorKind | str) -> str:
    return f"{PREFIX}/alerts/{Severity(severity).value}/{SensorKind(kind).value}"


_HAZARD_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def incident_topic(severity: Severity | str, hazard: str) -> str:
    """``ioc/v1/incidents/<severity>/<hazard>``; a hazard that is no plain word is ``other``."""
    level = hazard if _HAZARD_RE.match(hazard) else "other"
    return f"{PREFIX}/incidents/{Severity(severity).value}/{level}"


# Subscription filters
ALL_DATA = f"{PREFIX}/+/+/data"
ALL_META = f"{PREFIX}/+/+/meta"
ALL_STATUS = f"{PREFIX}/+/+/status"
ALL_SENSOR = f"{PREFIX}/+/+/+"
ALL_ALERTS = f"{PREFIX}/alerts/#"
ALL_INCIDENTS = f"{PREFIX}/incidents/#"


def shared(group: str, topic_filter: str) -> str:
    """An MQTT 5 shared subscription: the broker spreads messages over the group."""
    return f"$share/{group}/{topic_filter}"


def parse_sensor_topic(topic: str) -> SensorTopic:
    """Split ``ioc/v1/<kind>/<sensor>/<channel>``; raise ``TopicError`` if it is not one."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "ioc" or parts[1] != "v1":
        raise _topic_error("topic.form", topic=repr(topic)[:200])
    kind = _KINDS.get(parts[2])
    if kind is None:
        raise _topic_error("topic.kind", kind=repr(parts[2])[:80], known=", ".join(_KINDS))
    if not SENSOR_ID_RE.match(parts[3]):
        raise _topic_error("topic.sensor", sensor=repr(parts[3])[:80])
    channel = _CHANNELS.get(parts[4])
    if channel is None:
        raise _topic_error("topic.channel", channel=repr(parts[4])[:80])
    return SensorTopic(kind, parts[3], channel)
