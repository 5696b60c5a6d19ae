"""schemathesis over the OpenAPI schema, against a real server with an admin token: no server
error, every status, header and body conforms to the schema, invalid input is refused with 4xx."""

from __future__ import annotations

import psycopg
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

from api.auth import hash_token
from api.config import ApiSettings
from api.main import create_app
from tests.api.conftest import LiveApi, insert_alert

pytestmark = [pytest.mark.db, pytest.mark.slow]

ADMIN_ID = 7_777_777
ADMIN_TOKEN = "schemathesis-admin-token"


@pytest.fixture(scope="module")
def target(shared_api: LiveApi, shared_db_url: str) -> LiveApi:
    with psycopg.connect(shared_db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO api_tokens (id, name, role, token_hash) VALUES (%s, 'fuzz', 'admin', %s)",
            (ADMIN_ID, hash_token(ADMIN_TOKEN)),
        )
        conn.execute(
            "INSERT INTO sensors (id, kind, lat, lon) VALUES ('wl-td-03', 'water_level', 21, 105.8)"
        )
        for _ in range(3):
            insert_alert(conn)
    return shared_api


# the schema is static: build it from an app that is never started
schema = schemathesis.openapi.from_dict(create_app(ApiSettings()).openapi())


# Rules the server enforces that its OpenAPI schema does not state.  A schema-valid request
# refused with 422 passes the positive-data check (schemathesis ST202) only if every error
# it names is one of these; any other such refusal fails the test.
UNSTATED_RULES = (
    # cannot be stated: they tie two parameters, or two numbers inside one, together
    "give sensor ids, or a place: bbox, area or kind",  # one of four query parameters
    "end must be after start",  # two parameters (or two body fields)
    "; narrow start..end",  # end - start at most N days
    "; widen the bucket or narrow the range",  # (end - start) / bucket at most 10,000
    "-180 <= minlon <= maxlon <= 180 and -90 <= minlat <= maxlat <= 90",  # within one bbox
    # cannot be stated: the size of the serialized JSON of a free-form object (16 KiB), and
    # lone surrogates (valid JSON escapes, invalid Unicode) anywhere in it
    "attributes exceed 16 KiB of JSON",
    "text is not valid Unicode (lone surrogate)",
    # could be stated, are not yet: a number range inside a string (1m to 1d), integers
    # within 64 bits and no NUL at any depth of a free-form object (a recursive schema),
    # and a notification route's spec per type (a oneOf by type)
    "bucket must be between 1 minute and 1 day",
    "attributes must be plain JSON (integers within 64 bits)",
    "text must not contain NUL characters",
    "invalid_route: ",
)


def _unstated_rules_only(response: requests.Response) -> bool:
    if response.status_code != 422:
        return False
    errors = response.json().get("errors") or [{"msg": response.json().get("detail", "")}]
    # a field that may also be null reports its value's error and "Input should be None"
    errors = [e for e in errors if e.get("loc", [""])[-1] != "none"]
    return all(any(rule in str(e.get("msg", "")) for rule in UNSTATED_RULES) for e in errors)


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_openapi_contract(case: schemathesis.Case, target: LiveApi) -> None:
    if case.path_parameters and case.path_parameters.get("token_id") == ADMIN_ID:
        case.path_parameters["token_id"] = ADMIN_ID + 1  # keep our own token alive
    response = case.call(base_url=target.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    # every check, the positive-data one (ST202) included, except for the rules above
    excluded = (
        [schemathesis.checks.positive_data_acceptance] if _unstated_rules_only(response) else []
    )
    case.validate_response(response, excluded_checks=excluded)
