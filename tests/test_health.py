"""/healthz: 200 when the database is migrated and Dovecot answers, 503 naming the part that failed."""

from __future__ import annotations

import time
import uuid

import pytest
import stack

# Touches Dovecot or Postfix: scripts/test runs it on the other Debian release too.
pytestmark = pytest.mark.mail_server


def test_healthy(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "checks": {"database": "ok", "imap": "ok"}}
    assert response.headers["Cache-Control"] == "no-store"


def test_unmigrated_database(app_factory, mail_stack):
    name = f"scratch_{uuid.uuid4().hex[:10]}"
    stack.ensure_database(name, fresh=True)
    try:
        app = app_factory(DATABASE_URL=stack.database_url(name))
        response = app.test_client().get("/healthz")
        assert response.status_code == 503
        assert response.get_json()["checks"]["database"].startswith("not migrated")
        assert response.get_json()["checks"]["imap"] == "ok"
    finally:
        from portal.db import close_pool

        close_pool(app)
        stack.drop_database(name)


@pytest.fixture
def stopped_postgresql(mail_stack):
    stack.stop_cluster()
    yield
    stack.start_cluster()


def test_postgresql_stopped(app, stopped_postgresql):
    client = app.test_client()
    started = time.monotonic()
    response = client.get("/healthz")
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.get_json()["checks"] == {"database": "unreachable", "imap": "ok"}
    assert elapsed < 3


def test_recovers_when_postgresql_returns(app, mail_stack):
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    stack.stop_cluster()
    try:
        assert client.get("/healthz").status_code == 503
    finally:
        stack.start_cluster()
    deadline = time.monotonic() + 10
    while client.get("/healthz").status_code != 200:
        assert time.monotonic() < deadline, "the portal did not recover after PostgreSQL came back"
        time.sleep(0.2)


@pytest.fixture
def stopped_dovecot(mail_stack):
    stack.stop_dovecot(mail_stack)
    yield
    stack.start_dovecot(mail_stack)


def test_dovecot_stopped(client, stopped_dovecot):
    started = time.monotonic()
    response = client.get("/healthz")
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.get_json()["checks"] == {"database": "ok", "imap": "unreachable"}
    assert elapsed < 3


def test_dovecot_hanging(app_factory, db, silent_server):
    app = app_factory(IMAP_PORT=silent_server, HEALTH_TIMEOUT=1.0)
    started = time.monotonic()
    response = app.test_client().get("/healthz")
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.get_json()["checks"]["imap"] == "unreachable"
    assert elapsed < 3
