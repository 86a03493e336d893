"""The app skeleton: pages, error pages, CSRF, and the entry points operators use."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import stack

from portal.converters import AliasAddressConverter
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent


def test_index_sends_to_sign_in(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth/login")


def test_the_favicon_is_served_where_browsers_look_and_linked_from_every_page(client):
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
    assert icon.get_data(as_text=True).startswith("<svg") and "no-store" not in icon.headers.get("Cache-Control", "")
    page = client.get("/auth/login").get_data(as_text=True)
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page
    with client.get("/static/favicon.svg") as static_icon:
        assert static_icon.status_code == 200


def test_sign_in_page(client):
    response = client.get("/auth/login")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'name="csrf_token"' in page
    assert re.search(r'<label [^>]*for="address"', page) and re.search(r'<label [^>]*for="password"', page)
    assert 'autocomplete="current-password"' in page


def test_post_without_csrf_token_is_refused(app_factory, db):
    app = app_factory(WTF_CSRF_ENABLED=True)
    response = app.test_client().post("/auth/login", data={"address": "a@b.example", "password": "x"})
    assert response.status_code == 400
    assert "Bad request" in response.get_data(as_text=True)


def test_not_found_page_has_no_internals(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    page = response.get_data(as_text=True)
    assert "Not found" in page and "Traceback" not in page


def test_database_down_gives_503_page_not_a_trace(app_factory, db):
    app = app_factory(DATABASE_URL="postgresql://nobody:x@127.0.0.1:1/none", DB_POOL_TIMEOUT=1.0)

    @app.get("/_test_db")
    def uses_database():
        from portal.db import get_db

        get_db().execute("SELECT 1")
        return "unreachable"

    response = app.test_client().get("/_test_db")
    assert response.status_code == 503
    page = response.get_data(as_text=True)
    assert "database is not answering" in page and "Traceback" not in page


def _backend_pid_route(app):
    @app.get("/_test_backend")
    def backend_pid():
        from portal.db import get_db

        return str(get_db().execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"])


def test_a_pooled_connection_the_server_ended_is_replaced_not_served(app_factory, db, monkeypatch):
    """A connection PostgreSQL closed in the pool (a restart, an operator's kill) never reaches a request,
    and a healthy one is handed out without the ping that used to cost every request a round trip."""
    from psycopg_pool import ConnectionPool

    pings = []
    real_ping = ConnectionPool.check_connection
    monkeypatch.setattr(ConnectionPool, "check_connection",
                        staticmethod(lambda conn: (pings.append(1), real_ping(conn))))
    app = app_factory()
    _backend_pid_route(app)
    client = app.test_client()
    pids = {int(client.get("/_test_backend").get_data(as_text=True)) for _ in range(6)}
    assert pids and pings == []
    for pid in pids:
        assert db.execute("SELECT pg_terminate_backend(%s) AS done", (pid,)).fetchone()["done"]
    deadline = time.monotonic() + 5
    while db.execute("SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s)", (list(pids),)).fetchone():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for _ in range(6):
        response = client.get("/_test_backend")
        assert response.status_code == 200
        assert int(response.get_data(as_text=True)) not in pids
    assert pings, "the ended connection was handed out unchecked"


def test_flask_cli_upgrade_with_environment_settings(mail_stack, database_url):
    """The documented command, run as an operator would, configured only by PORTAL_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env.update(PORTAL_DATABASE_URL=database_url, PORTAL_SECRET_KEY="s" * 40)
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "nothing to do" in result.stdout


def test_gunicorn_serves_health(mail_stack, tmp_path):
    """gunicorn app:app with the stack's TOML config answers /healthz from a forked worker."""
    import time
    import urllib.request

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env["PORTAL_CONFIG"] = str(stack.write_portal_config(mail_stack))
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "config/gunicorn.conf.py", "--workers", "2",
             "--bind", f"127.0.0.1:{port}", "app:app"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log_file,
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:  # noqa: S310
                    assert response.status == 200
                    break
            except OSError:
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "gunicorn did not answer"
                time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=10)


def _post_routes(app):
    for rule in app.url_map.iter_rules():
        if "POST" in rule.methods and rule.endpoint != "static":
            yield rule


def test_every_post_route_requires_a_csrf_token(app_factory, db):
    """Walks app.url_map, so a new route is covered the day it is added."""
    app = app_factory()
    client = app.test_client()
    rules = list(_post_routes(app))
    assert len(rules) >= 6
    for rule in rules:
        # Any value routes, but an alias address must look like one (portal/converters.py).
        url = rule.build({arg: "1@example.com" if isinstance(rule._converters[arg], AliasAddressConverter) else 1
                          for arg in rule.arguments}, append_unknown=False)[1]
        response = client.post(url, data={"anything": "x"})
        # The API takes no cookie, so no CSRF token either: without its bearer token it does nothing.
        expected = 401 if rule.endpoint.startswith("api.") else 400
        assert response.status_code == expected, f"{rule} answered {response.status_code} without a CSRF token"


def test_security_headers_on_every_page(client):
    for path in ("/auth/login", "/no/such/page", "/static/style.css"):
        response = client.get(path)
        policy = response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"
        response.close()  # a static file response holds its file open until closed
