"""Settings from ``IOC_*`` environment variables (pydantic-settings), shared by every part.

Each runnable part has its own ``config.py`` that extends ``Settings`` with what
only it needs; ``main()`` builds the settings once and passes them down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.codecs import Limits
from core.errors import ConfigError
from core.i18n import DEFAULT_LANGUAGE, Lang


class Settings(BaseSettings):
    """What every process needs: where the broker and the database are, and how to log."""

    # errors never echo the input: IOC_MQTT_URL and IOC_DATABASE_URL may hold passwords
    model_config = SettingsConfigDict(env_prefix="IOC_", extra="ignore", hide_input_in_errors=True)

    mqtt_url: SecretStr = Field(
        default=SecretStr("mqtt://127.0.0.1:1883"),
        description="Broker, e.g. mqtt://user:pass@127.0.0.1:1883 (mqtts:// for TLS); a cluster's"
        " nodes comma-separated, e.g. mqtt://10.0.0.1:1883,mqtt://10.0.0.2:1883",
    )
    database_url: SecretStr = Field(
        default=SecretStr("postgresql://127.0.0.1:5432/ioc"),
        description="PostgreSQL/TimescaleDB, e.g. postgresql://ioc:secret@db:5432/ioc",
    )
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_format: Literal["text", "json"] = Field(default="text", description="json for log shippers")
    language: Lang = Field(
        default=DEFAULT_LANGUAGE,
        description="vi or en: the language of texts when the reader asks for none",
    )
    # what a plausible reading looks like (ingest dead-letters the rest)
    max_payload_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)
    max_entries: int = Field(default=10_000, ge=1, le=1_000_000)
    max_future_skew_s: float = Field(default=300.0, ge=0, le=7 * 86_400)
    max_age_days: float = Field(default=30.0, gt=0, le=36_500)
    retention_days: int = Field(
        default=365, ge=1, description="readings older than this are dropped"
    )

    @field_validator("mqtt_url")
    @classmethod
    def _nodes_parse(cls, value: SecretStr) -> SecretStr:
        """A bad broker list stops the part at start-up, with the reason (never the password)."""
        try:
            parse_mqtt_urls(value.get_secret_value())
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return value

    @property
    def limits(self) -> Limits:
        return Limits(
            max_payload_bytes=self.max_payload_bytes,
            max_entries=self.max_entries,
            max_future_skew_s=self.max_future_skew_s,
            max_age_s=self.max_age_days * 86_400.0,
        )

    @property
    def mqtt(self) -> MqttAddress:
        """The first broker node (where every part connects first)."""
        return self.mqtt_nodes[0]

    @property
    def mqtt_nodes(self) -> tuple[MqttAddress, ...]:
        """Every broker node of ``IOC_MQTT_URL``, in the order given."""
        return parse_mqtt_urls(self.mqtt_url.get_secret_value())

    @property
    def dsn(self) -> str:
        return self.database_url.get_secret_value()


@dataclass(frozen=True, slots=True)
class MqttAddress:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool


def parse_mqtt_urls(urls: str) -> tuple[MqttAddress, ...]:
    """A comma-separated list of a broker cluster's nodes, e.g. ``mqtt://a:1883,mqtt://b:1883``.

    User name and password given on the first node apply to the nodes that give none;
    every node speaks the same scheme (all TLS or none).
    """
    items = [u.strip() for u in urls.split(",")]
    if not any(items):
        raise ConfigError("IOC_MQTT_URL is empty")
    if not all(items):
        raise ConfigError("IOC_MQTT_URL has an empty entry between commas")
    nodes = [parse_mqtt_url(u) for u in items]
    first = nodes[0]
    if any(n.tls != first.tls for n in nodes):
        raise ConfigError("IOC_MQTT_URL mixes mqtt:// and mqtts:// nodes: use one for all")
    return tuple(
        n
        if n.username is not None
        else MqttAddress(n.host, n.port, first.username, first.password, n.tls)
        for n in nodes
    )


def parse_mqtt_url(url: str) -> MqttAddress:
    """One broker address, e.g. ``mqtt://user:pass@host:1883``."""
    if "," in url:
        raise ConfigError("expected one broker address here, got a comma-separated list")
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ConfigError(f"IOC_MQTT_URL must start with mqtt:// or mqtts://, got {parts.scheme!r}")
    tls = parts.scheme in ("mqtts", "ssl")
    if not parts.hostname:
        raise ConfigError("IOC_MQTT_URL has no host")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise ConfigError(f"IOC_MQTT_URL has a bad port: {exc}") from None
    return MqttAddress(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=tls,
    )
