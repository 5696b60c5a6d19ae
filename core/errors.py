"""The exception hierarchy of the whole backend, documented in one place.

Every error the project raises on purpose is an ``IocError``.  The API maps the
subclasses to HTTP statuses in one handler; the ingestor turns ``PayloadError``
into dead-letter rows whose ``reason`` is the error's ``reason`` code.
"""

from __future__ import annotations


class IocError(Exception):
    """Base class of every deliberate error in the project.

    ``key`` names the error's text in the message catalogue (``core/locale``) and
    ``fields`` fill it in, so that the API can answer in the reader's language; the
    English message (``str(error)``) stays the one logs and API clients without
    ``Accept-Language`` see.
    """

    def __init__(self, *args: object, key: str | None = None, **fields: object) -> None:
        super().__init__(*args)
        self.key = key
        self.fields = fields


class ConfigError(IocError):
    """A setting is missing or has an impossible value."""


class TopicError(IocError):
    """An MQTT topic does not follow the ``ioc/v1/...`` scheme."""


class PayloadError(IocError):
    """A message cannot become readings.

    ``reason`` is a short stable code (``malformed_json``, ``sensor_mismatch``...)
    used as a Prometheus label and stored in ``dead_letters.reason`` together with
    ``detail``, a sentence a person can read.
    """

    def __init__(
        self, reason: str, detail: str, *, key: str | None = None, **fields: object
    ) -> None:
        super().__init__(f"{reason}: {detail}", key=key, **fields)
        self.reason = reason
        self.detail = detail


class NotFoundError(IocError):
    """A sensor, alert or token that does not exist."""


class ConflictError(IocError):
    """The request contradicts the current state (e.g. resolving a resolved alert)."""


class AuthError(IocError):
    """Missing or invalid credentials (HTTP 401)."""


class PermissionDeniedError(IocError):
    """Valid credentials without the role the action needs (HTTP 403)."""


class InvalidValue(ValueError):
    """A value a validator refuses, with its text's ``key`` and ``fields`` in the catalogue
    (pydantic keeps the exception, so a 422 can be written in the reader's language)."""

    def __init__(self, message: str, key: str, **fields: object) -> None:
        super().__init__(message)
        self.key = key
        self.fields = fields


class ScenarioError(IocError):
    """A simulator scenario file has a mistake; the message names the line."""
