"""The MQTT contract as data: topics, payload JSON Schemas, QoS and retain, as an AsyncAPI 3.0 document.

Everything here is derived from the rest of ``core`` (the topic scheme, the metric
catalogue with its physical ranges, the FIWARE mappings, the ``Alert`` type), so the
published contract cannot drift from what the ingestor accepts: ``ioc contract``
writes ``docs/asyncapi.yaml`` and ``docs/schemas/*.json`` from it, and the tests
check those files against it and against the codecs.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import yaml

from core.codecs import FIWARE_ATTRS, FIWARE_TYPES
from core.metrics import METRICS
from core.topics import (
    ALL_ALERTS,
    ALL_DATA,
    ALL_INCIDENTS,
    ALL_META,
    ALL_STATUS,
    PREFIX,
    SENSOR_ID_RE,
)
from core.types import Alert, DeviceStatus, Incident, SensorKind, Severity

JSON_SCHEMA = "http://json-schema.org/draft-07/schema#"  # what AsyncAPI 3.0 schemas extend
CONTRACT_VERSION = "1.2.0"  # of the v1 topic tree; bump with any change of the payloads
MAX_ENTRIES = 10_000  # IOC_MAX_ENTRIES' default: entries in one message

Schema = dict[str, Any]

# ---------------------------------------------------------------------------
# payload schemas


def _device_metrics() -> list[str]:
    return [m.name for m in METRICS.values() if not m.derived]


def _timestamp() -> Schema:
    return {
        "description": "RFC 3339 with a zone, or epoch milliseconds; absent: the time of arrival",
        "oneOf": [
            {"type": "string", "format": "date-time", "maxLength": 64},
            {"type": "number"},
        ],
    }


def _value(name: str) -> Schema:
    m = METRICS[name]
    return {
        "type": "number",
        "minimum": m.low,
        "maximum": m.high,
        "description": f"{m.description} ({m.unit})",
    }


def native_schema() -> Schema:
    """``{"ts": ..., "values": {metric: number}}`` or a list of them."""
    entry: Schema = {
        "type": "object",
        "required": ["values"],
        "properties": {
            "ts": _timestamp(),
            "sensor": {"type": "string", "description": "if given, the sensor id of the topic"},
            "values": {
                "type": "object",
                "minProperties": 1,
                "properties": {name: _value(name) for name in _device_metrics()},
                "additionalProperties": False,
            },
        },
    }
    return {
        "title": "Native readings",
        "description": "One set of readings of one instant, or a list of such sets.",
        "oneOf": [entry, {"type": "array", "minItems": 1, "maxItems": MAX_ENTRIES, "items": entry}],
    }


def senml_schema() -> Schema:
    """A SenML pack (RFC 8428), numeric values only."""
    record: Schema = {
        "type": "object",
        "properties": {
            "bn": {"type": "string", "description": "base name, e.g. urn:dev:ioc:<sensor_id>:"},
            "bt": {"type": "number", "description": "base time, epoch seconds"},
            "bu": {"type": "string"},
            "bv": {"type": "number"},
            "n": {
                "type": "string",
                "description": "name; with bn it resolves to [<anything>:]<sensor_id>:<metric>",
            },
            "u": {"type": "string", "description": "the metric's unit (see the catalogue)"},
            "v": {"type": "number"},
            "t": {"type": "number", "description": "time relative to bt, seconds"},
        },
    }
    return {
        "title": "SenML pack",
        "description": "RFC 8428 records; only numeric values (v) are stored.",
        "type": "array",
        "minItems": 1,
        "maxItems": MAX_ENTRIES,
        "items": record,
    }


def _fiware_entity(ftype: str) -> Schema:
    props: Schema = {
        "id": {"type": "string", "description": "must end with the topic's sensor id"},
        "type": {"const": ftype},
        "dateObserved": _timestamp(),
    }
    for attr, (metric, scale) in FIWARE_ATTRS[ftype].items():
        m = METRICS[metric]
        number: Schema = {"type": "number", "minimum": m.low / scale, "maximum": m.high / scale}
        props[attr] = {
            "description": f"-> {metric} ({m.unit})"
            + (f" after x {scale:g}" if scale != 1 else ""),
            "oneOf": [
                number,
                {"type": "object", "required": ["value"], "properties": {"value": number}},
            ],
        }
    return {"type": "object", "required": ["type"], "properties": props}


def fiware_schema() -> Schema:
    """FIWARE Smart Data Model entities (key-values or normalized), one or a list."""
    entity: Schema = {"oneOf": [_fiware_entity(t) for t in FIWARE_TYPES]}
    return {
        "title": "FIWARE Smart Data Model entity",
        "description": "Key-values or normalized NGSI attributes; " + ", ".join(FIWARE_TYPES) + ".",
        "oneOf": [
            entity,
            {"type": "array", "minItems": 1, "maxItems": MAX_ENTRIES, "items": entity},
        ],
    }


def data_schema() -> Schema:
    """What ``.../data`` accepts: the format is recognised from the payload itself."""
    return {
        "title": "Readings",
        "description": "Native JSON, a SenML pack or FIWARE entities. Values outside the"
        " metric's physical range are dead-lettered; the good entries of a pack are kept.",
        "anyOf": [native_schema(), senml_schema(), fiware_schema()],
    }


def meta_schema() -> Schema:
    """The retained self-registration of ``.../meta``."""
    return {
        "title": "Sensor registration",
        "description": "Retained. Keys not listed here are kept as the sensor's attributes;"
        " an empty retained message clears the registration and is ignored.",
        "type": "object",
        "properties": {
            "id": {"type": "string", "description": "if given, the sensor id of the topic"},
            "kind": {"enum": [k.value for k in SensorKind]},
            "name": {"type": "string"},
            "lat": {"type": ["number", "null"], "minimum": -90, "maximum": 90},
            "lon": {"type": ["number", "null"], "minimum": -180, "maximum": 180},
            "area": {"type": "string"},
            "metrics": {"type": "array", "items": {"enum": _device_metrics()}},
            "interval_s": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 86_400},
            "site_type": {
                "type": "string",
                "description": "water-level gauges: street or river (street flooding levels"
                " apply to street gauges only)",
            },
            "levels": {
                "type": "object",
                "description": "the device's own alarm stages, per metric, replacing the"
                " built-in ones",
                "additionalProperties": {
                    "type": "object",
                    "properties": {s.value: {"type": "number"} for s in Severity},
                    "additionalProperties": False,
                },
            },
        },
    }


def status_schema() -> Schema:
    """``online``/``offline`` as plain text (the Last Will), or a JSON object with a time."""
    states = [s.value for s in DeviceStatus]
    return {
        "title": "Device status",
        "description": "Retained; set offline as the device's Last Will.",
        "oneOf": [
            {"type": "string", "enum": states},
            {
                "type": "object",
                "required": ["status"],
                "properties": {"status": {"enum": states}, "ts": _timestamp()},
            },
        ],
    }


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """Replace pydantic's ``#/$defs/...`` references by their definitions."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def alert_schema() -> Schema:
    """An alert event on ``ioc/v1/alerts/<severity>/<kind>``: what changed and the alert after it."""
    model = Alert.model_json_schema()
    schema: Schema = _inline(model, model.get("$defs", {}))
    schema["title"] = "Alert event"
    schema["description"] = (
        "The alert after a change; fields may be added, so ignore those you do not know."
    )
    schema["properties"] = {
        "action": {
            "type": "string",
            "description": "what happened to the alert",
            "examples": ["opened", "updated", "escalated", "reopened", "resolved"],
        },
        **schema["properties"],
    }
    schema["required"] = ["action", *schema.get("required", [])]
    return schema


def incident_schema() -> Schema:
    """An incident event on ``ioc/v1/incidents/<severity>/<hazard>``: the action and the incident."""
    model = Incident.model_json_schema()
    incident: Schema = _inline(model, model.get("$defs", {}))
    incident["description"] = (
        "The incident after the change; fields may be added, so ignore those you do not know."
    )
    return {
        "title": "Incident event",
        "description": "One committed change of an incident (related alerts grouped by"
        " analytics); seq increases in commit order, so drop any seq already seen.",
        "type": "object",
        "properties": {
            "seq": {"type": "integer", "description": "position in the committed event log"},
            "event": {
                "type": "string",
                "description": "what happened (the same word as action)",
                "examples": ["opened", "escalated", "acknowledged", "resolved", "merged"],
            },
            "action": {"type": "string", "description": "the same word as event"},
            "time": {"type": "string", "format": "date-time"},
            "actor": {"type": "string", "description": "system, notify or an operator's name"},
            "note": {"type": ["string", "null"]},
            "incident": incident,
        },
        "required": ["seq", "event", "action", "time", "incident"],
    }


def payload_schemas() -> dict[str, Schema]:
    """Every payload's JSON Schema by file name stem (``docs/schemas/<name>.json``)."""
    return {
        "data": data_schema(),
        "meta": meta_schema(),
        "status": status_schema(),
        "alert": alert_schema(),
        "incident": incident_schema(),
    }


def standalone(name: str, schema: Schema) -> Schema:
    """A schema as published for device makers: with ``$schema`` and ``$id``."""
    return {"$schema": JSON_SCHEMA, "$id": f"{name}.json", **copy.deepcopy(schema)}


# ---------------------------------------------------------------------------
# the AsyncAPI document


def _sensor_parameters() -> Schema:
    return {
        "kind": {
            "enum": [k.value for k in SensorKind],
            "description": "what the sensor is",
        },
        "sensorId": {
            "description": f"the sensor's id, {SENSOR_ID_RE.pattern}; a payload that names"
            " another sensor is rejected",
            "examples": ["aq-hk-01", "cam-0001"],
        },
    }


def _mqtt_op(qos: int, retain: bool) -> Schema:
    return {"mqtt": {"qos": qos, "retain": retain, "bindingVersion": "0.2.0"}}


def asyncapi_document() -> Schema:
    """The AsyncAPI 3.0 document of the MQTT contract, from the backend's point of view."""
    sensor_address = PREFIX + "/{kind}/{sensorId}/"
    channels: Schema = {
        "data": {
            "address": sensor_address + "data",
            "title": "Readings",
            "description": f"A sensor's readings (QoS 1, not retained). Filter: `{ALL_DATA}`.",
            "parameters": _sensor_parameters(),
            "messages": {"readings": {"$ref": "#/components/messages/readings"}},
        },
        "meta": {
            "address": sensor_address + "meta",
            "title": "Self-registration",
            "description": f"Retained (QoS 1). Filter: `{ALL_META}`.",
            "parameters": _sensor_parameters(),
            "messages": {"registration": {"$ref": "#/components/messages/registration"}},
        },
        "status": {
            "address": sensor_address + "status",
            "title": "Device status",
            "description": "Retained (QoS 1): the device publishes online after connecting"
            f" and sets offline as its Last Will. Filter: `{ALL_STATUS}`.",
            "parameters": _sensor_parameters(),
            "messages": {"status": {"$ref": "#/components/messages/status"}},
        },
        "alerts": {
            "address": PREFIX + "/alerts/{severity}/{kind}",
            "title": "Alert events",
            "description": "Alert changes published by analytics after they are committed"
            f" (QoS 1, not retained). Filter: `{ALL_ALERTS}`.",
            "parameters": {
                "severity": {"enum": [s.value for s in Severity]},
                "kind": {"enum": [k.value for k in SensorKind]},
            },
            "messages": {"alert": {"$ref": "#/components/messages/alert"}},
        },
        "incidents": {
            "address": PREFIX + "/incidents/{severity}/{hazard}",
            "title": "Incident events",
            "description": "Incident changes (opened, updated, escalated, acknowledged, shelved,"
            " resolved, notified, ...) relayed from the committed event log after they are"
            f" committed (QoS 1, not retained). Filter: `{ALL_INCIDENTS}`.",
            "parameters": {
                "severity": {"enum": [s.value for s in Severity]},
                "hazard": {
                    "description": "air_pollution, flooding, traffic, fire_weather,"
                    " severe_weather, noise, device_fault or other",
                    "examples": ["air_pollution"],
                },
            },
            "messages": {"incident": {"$ref": "#/components/messages/incident"}},
        },
    }
    operations: Schema = {
        "receiveReadings": {
            "action": "receive",
            "channel": {"$ref": "#/channels/data"},
            "summary": "Devices publish readings; ingest stores every one of them exactly once"
            " or dead-letters it with a reason.",
            "bindings": _mqtt_op(1, False),
            "messages": [{"$ref": "#/channels/data/messages/readings"}],
        },
        "receiveRegistration": {
            "action": "receive",
            "channel": {"$ref": "#/channels/meta"},
            "summary": "Devices register themselves (retained).",
            "bindings": _mqtt_op(1, True),
            "messages": [{"$ref": "#/channels/meta/messages/registration"}],
        },
        "receiveStatus": {
            "action": "receive",
            "channel": {"$ref": "#/channels/status"},
            "summary": "Devices say online, and offline through their Last Will (retained).",
            "bindings": _mqtt_op(1, True),
            "messages": [{"$ref": "#/channels/status/messages/status"}],
        },
        "sendAlerts": {
            "action": "send",
            "channel": {"$ref": "#/channels/alerts"},
            "summary": "Analytics publishes every committed alert change.",
            "bindings": _mqtt_op(1, False),
            "messages": [{"$ref": "#/channels/alerts/messages/alert"}],
        },
        "sendIncidents": {
            "action": "send",
            "channel": {"$ref": "#/channels/incidents"},
            "summary": "Every committed incident change, from the same log as the alerts.",
            "bindings": _mqtt_op(1, False),
            "messages": [{"$ref": "#/channels/incidents/messages/incident"}],
        },
    }
    schemas = payload_schemas()
    messages: Schema = {
        "readings": {
            "name": "readings",
            "title": "Readings",
            "contentType": "application/json",
            "payload": {"$ref": "#/components/schemas/data"},
        },
        "registration": {
            "name": "registration",
            "title": "Sensor registration",
            "contentType": "application/json",
            "payload": {"$ref": "#/components/schemas/meta"},
        },
        "status": {
            "name": "status",
            "title": "Device status",
            "contentType": "text/plain",
            "description": "`online` or `offline` as plain text, or"
            ' `{"status": "offline", "ts": ...}` as JSON.',
            "payload": {"$ref": "#/components/schemas/status"},
        },
        "alert": {
            "name": "alert",
            "title": "Alert event",
            "contentType": "application/json",
            "payload": {"$ref": "#/components/schemas/alert"},
        },
        "incident": {
            "name": "incident",
            "title": "Incident event",
            "contentType": "application/json",
            "payload": {"$ref": "#/components/schemas/incident"},
        },
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "IOC backend: MQTT contract",
            "version": CONTRACT_VERSION,
            "description": "Topics and payloads of the city monitoring backend (topic tree"
            f" `{PREFIX}`). Every message is QoS 1. The payloads' JSON Schemas are also"
            " published one per file under docs/schemas/.",
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "broker": {
                "host": "broker:1883",
                "protocol": "mqtt",
                "protocolVersion": "5.0",
                "description": "Any MQTT 5 broker, or a cluster of them (IOC_MQTT_URL lists its"
                " nodes); MQTT 3.1.1 works too. mqtts on 8883 with TLS.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


# ---------------------------------------------------------------------------
# the files under docs/

HEADER = (
    "# The MQTT contract of the IOC backend (AsyncAPI 3.0).\n"
    "# Generated from core by `ioc contract write`: do not edit by hand.\n"
)


def contract_files() -> dict[str, str]:
    """``asyncapi.yaml`` and ``schemas/<name>.json``, relative to ``docs/``, with their text."""
    files = {
        "asyncapi.yaml": HEADER
        + yaml.safe_dump(asyncapi_document(), sort_keys=False, allow_unicode=True, width=100),
    }
    for name, schema in payload_schemas().items():
        text = json.dumps(standalone(name, schema), indent=2, ensure_ascii=False)
        files[f"schemas/{name}.json"] = text + "\n"
    return files
