"""Fuzz the running API from its own OpenAPI document (Schemathesis, property-based).

Every operation gets generated requests, valid and not, with the token of a.example's domain admin,
against the real database: no answer is a 5xx, every answer matches the document (status, media type,
schema), and nothing outside the token's reach (b.example, the roles, the other domains) ever changes.
"""

from __future__ import annotations

import hashlib

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance
from schemathesis.specs.openapi.checks import response_schema_conformance

from portal.api import spec
from tests.test_api_access import _build
from tests.test_api_access import _token

# Names the generated path parameters are sometimes swapped for, so that requests reach real rows (in
# reach and out of it) and not only 404s.
NAMES = {"domain": ["a.example", "b.example"],
         "address": ["user@a.example", "team@a.example", "off@a.example", "bob@b.example", "admin@b.example",
                     "root@a.example"]}


@pytest.fixture
def fuzzed(app_factory, db):
    app = app_factory(API_CALLS_PER_MINUTE=100_000)
    _build(db)
    return app, _token(app, db, "admin_a")


# The document the API serves is made from these same declarations (tests/test_api.py checks that it
# describes every route); each case is sent to the test's app in-process.
schema = schemathesis.openapi.from_dict(spec.openapi_document("http://localhost/api/v1"))


def _outside(db) -> dict:
    """Everything the domain admin of a.example must never change."""
    return {
        "domains": db.execute("SELECT name, active, max_mailboxes, max_aliases, default_quota_bytes,"
                              " max_quota_bytes FROM virtual_domains WHERE name <> 'a.example' ORDER BY 1").fetchall(),
        "mailboxes": db.execute("SELECT email, active, quota_bytes, display_name, password FROM virtual_users"
                                " WHERE email NOT LIKE '%%@a.example' ORDER BY 1").fetchall(),
        "aliases": db.execute("SELECT source, destination FROM virtual_aliases WHERE source NOT LIKE '%%@a.example'"
                              " ORDER BY 1, 2").fetchall(),
        "roles": db.execute("SELECT user_id, role, domain_id FROM portal_roles ORDER BY 1, 2, 3").fetchall(),
        "a.example": db.execute("SELECT name, active, max_mailboxes, max_aliases FROM virtual_domains"
                                " WHERE name = 'a.example'").fetchall(),
        "root": db.execute("SELECT email, active, password, display_name FROM virtual_users"
                           " WHERE email = 'root@a.example'").fetchall(),
    }


def _steer(case) -> None:
    for name, choices in NAMES.items():
        value = (case.path_parameters or {}).get(name)
        if value is not None:
            pick = hashlib.sha256(str(value).encode()).digest()[0] % (len(choices) + 1)
            if pick < len(choices):
                case.path_parameters[name] = choices[pick]


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzz_the_api_from_its_description(case, fuzzed, db):
    app, token = fuzzed
    before = _outside(db)
    _steer(case)
    case.call_and_validate(app=app, headers={"Authorization": f"Bearer {token}"},
                           checks=[not_a_server_error, response_schema_conformance, content_type_conformance])
    assert _outside(db) == before
