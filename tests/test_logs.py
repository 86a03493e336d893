"""Structured logs: one JSON line per event with request id, user and client address; never a secret."""

from __future__ import annotations

import io
import json
import logging
import secrets

import pytest

from tests.conftest import csrf_token
from tests.conftest import make_client
from tests.mail import make_mailbox

PASSWORD = "a long enough test password 17"


@pytest.fixture
def captured(app_factory, db):
    """An app outside testing mode (so logging is configured) and the lines it writes."""
    app = app_factory(TESTING=False, SECRET_KEY=secrets.token_hex(32), COOKIE_SECURE=False, LOG_FORMAT="json")
    handler = next(h for h in logging.getLogger("portal").handlers if h.get_name() == "mail-portal")
    stream = io.StringIO()
    old = handler.setStream(stream)
    yield app, stream
    handler.setStream(old)


def lines(stream) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_request_lines_carry_id_user_and_client(captured, db):
    app, stream = captured
    make_mailbox(db, "logged@log.example", PASSWORD)
    client = make_client(app, ip="198.18.250.7")
    response = client.get("/healthz", headers={"X-Request-ID": "nginx-req-0001"})
    assert response.headers["X-Request-ID"] == "nginx-req-0001"
    token = csrf_token(client, "/auth/login")
    client.post("/auth/login", data={"csrf_token": token, "address": "logged@log.example", "password": "wrong one 1"})
    client.post("/auth/login", data={"csrf_token": token, "address": "logged@log.example", "password": PASSWORD})
    client.get("/", headers={"X-Request-ID": "bad id with spaces"})
    entries = lines(stream)
    access = [e for e in entries if e["logger"] == "portal.access"]
    assert access[0] == {**access[0], "request_id": "nginx-req-0001", "client": "198.18.250.7", "method": "GET",
                         "path": "/healthz", "status": 200}
    refused = next(e for e in entries if e["message"].startswith("sign-in refused"))
    assert refused["message"] == "sign-in refused (invalid) for logged@log.example"
    assert refused["client"] == "198.18.250.7" and refused["level"] == "warning"
    last = access[-1]
    assert last["path"] == "/" and last["user"] == "logged@log.example" and last["request_id"] != "bad id with spaces"
    assert len(last["request_id"]) == 16
    text = stream.getvalue()
    assert PASSWORD not in text and "wrong one 1" not in text and token not in text
    assert "portal_session" not in text


def test_errors_are_logged_with_their_request(captured, db, monkeypatch):
    app, stream = captured
    from portal.account import views

    def boom(*args, **kwargs):
        raise RuntimeError("something broke")

    make_mailbox(db, "err@log.example", PASSWORD)
    client = make_client(app)
    token = csrf_token(client, "/auth/login")
    client.post("/auth/login", data={"csrf_token": token, "address": "err@log.example", "password": PASSWORD})
    monkeypatch.setattr(views.mailboxes, "get_mailbox", boom)
    response = client.get("/", headers={"X-Request-ID": "trace-me-123"})
    assert response.status_code == 500 and "something broke" not in response.get_data(as_text=True)
    error = next(e for e in lines(stream) if e["level"] == "error")
    assert error["request_id"] == "trace-me-123" and error["user"] == "err@log.example"
    assert "RuntimeError: something broke" in error["error"]


def test_text_lines_cannot_be_forged(app_factory, db):
    app = app_factory(TESTING=False, SECRET_KEY=secrets.token_hex(32), COOKIE_SECURE=False, LOG_FORMAT="text")
    handler = next(h for h in logging.getLogger("portal").handlers if h.get_name() == "mail-portal")
    stream = io.StringIO()
    old = handler.setStream(stream)
    try:
        make_client(app).get("/x%0a2026-01-01 00:00:00,000 INFO portal.access [- admin@example.com 1.2.3.4] GET /")
    finally:
        handler.setStream(old)
        app_factory(TESTING=False, SECRET_KEY=secrets.token_hex(32), LOG_FORMAT="json")  # back to the default
    assert len(stream.getvalue().splitlines()) == 1 and "\\n2026-01-01" in stream.getvalue()
