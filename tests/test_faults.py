"""Faults against the real services: a worker killed in the middle of a multi-row change loses nothing half-way."""

from __future__ import annotations

import http.client
import http.cookiejar
import os
import re
import secrets
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.mail import make_mailbox

# Touches Dovecot or Postfix: scripts/test runs it on the other Debian release too.
pytestmark = pytest.mark.mail_server

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "a long enough test password 22"



@pytest.fixture
def gunicorn(mail_stack, database_url, tmp_path):
    """The portal under gunicorn with one worker; yields (base URL, the master process)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env.update(PORTAL_DATABASE_URL=database_url, PORTAL_IMAP_HOST="127.0.0.1",
               PORTAL_IMAP_PORT=str(mail_stack.imap_port), PORTAL_IMAP_SECURITY="plain",
               PORTAL_SECRET_KEY=secrets.token_hex(32), PORTAL_COOKIE_SECURE="false",
               PORTAL_MAIL_ROOT=str(mail_stack.mail_root),
               # The superadmin here signs in with a password alone (tests/test_second_factors.py asks more).
               PORTAL_SECOND_FACTOR_REQUIRED_ROLES="")
    log = (tmp_path / "gunicorn.log").open("wb")
    master = subprocess.Popen([str(ROOT / ".venv/bin/gunicorn"), "--config", "config/gunicorn.conf.py",
                               "--workers", "1", "--bind", f"127.0.0.1:{port}", "app:app"],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(base + "/healthz", timeout=2).close()  # noqa: S310 - loopback
            break
        except urllib.error.HTTPError:
            break
        except OSError:
            assert time.monotonic() < deadline and master.poll() is None, (tmp_path / "gunicorn.log").read_text()
            time.sleep(0.2)
    yield base, master
    master.terminate()
    try:
        master.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(master.pid, signal.SIGKILL)
    log.close()


class Browser:
    """A cookie-keeping HTTP client that submits forms with their CSRF token, as a browser does."""

    def __init__(self, base: str):
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
                                                  _NoRedirect())

    def get(self, path: str) -> tuple[int, str]:
        try:
            with self.opener.open(self.base + path, timeout=60) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def post_form(self, page: str, action: str, **fields) -> int:
        token = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', self.get(page)[1]).group(1)
        data = urllib.parse.urlencode({"csrf_token": token, **fields}).encode()
        try:
            with self.opener.open(self.base + action, data=data, timeout=60) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except (OSError, http.client.HTTPException):
            return 0  # the server went away mid-request


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_a_worker_killed_mid_change_leaves_all_or_nothing(gunicorn, db):
    base, master = gunicorn
    make_mailbox(db, "root@keep.example", PASSWORD)
    db.execute("INSERT INTO virtual_domains (name) VALUES ('doomed.example')")
    db.execute("INSERT INTO virtual_users (domain_id, email, password) SELECT d.id, 'u' || n || '@doomed.example',"
               " 'x' FROM virtual_domains d, generate_series(1, 200) n WHERE d.name = 'doomed.example'")
    db.execute("INSERT INTO virtual_aliases (domain_id, source, destination) SELECT d.id, 'a' || n ||"
               " '@doomed.example', 'u' || n || '@doomed.example' FROM virtual_domains d,"
               " generate_series(1, 200) n WHERE d.name = 'doomed.example'")
    db.execute("INSERT INTO portal_roles (user_id, role) SELECT id, 'superadmin' FROM virtual_users"
               " WHERE email = 'root@keep.example'")
    before = db.execute("SELECT (SELECT count(*) FROM virtual_users) AS u, (SELECT count(*) FROM virtual_aliases)"
                        " AS a, (SELECT count(*) FROM portal_mailbox_removals) AS r,"
                        " (SELECT count(*) FROM virtual_domains) AS d").fetchone()
    # The domain's deletion pauses at its very last statement, the audit row, until the worker is killed.
    db.execute("""
        CREATE OR REPLACE FUNCTION test_pause_domain_delete() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.action = 'domain.delete' THEN PERFORM pg_sleep(4); END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER test_pause_domain_delete BEFORE INSERT ON portal_audit_log
            FOR EACH ROW EXECUTE FUNCTION test_pause_domain_delete();
    """)
    try:
        browser = Browser(base)
        assert browser.post_form("/auth/login", "/auth/login", address="root@keep.example",
                                 password=PASSWORD) == 302
        page = "/admin/domains/doomed.example/delete"
        outcome = []
        request = threading.Thread(target=lambda: outcome.append(
            browser.post_form(page, page, confirm="doomed.example")))
        request.start()
        deadline = time.monotonic() + 15
        while not db.execute("SELECT 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep'").fetchone():
            assert time.monotonic() < deadline, "the deletion never reached its audit row"
            time.sleep(0.05)
        workers = subprocess.run(["pgrep", "-P", str(master.pid)], capture_output=True, text=True).stdout.split()
        assert len(workers) == 1
        os.kill(int(workers[0]), signal.SIGKILL)
        request.join(timeout=30)
        assert outcome == [0]  # the browser saw the connection drop
        # PostgreSQL notices the lost client when the paused statement ends, and rolls everything back.
        deadline = time.monotonic() + 20
        while db.execute("SELECT 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep'").fetchone():
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        db.execute("DROP TRIGGER IF EXISTS test_pause_domain_delete ON portal_audit_log;"
                   " DROP FUNCTION IF EXISTS test_pause_domain_delete()")
    after = db.execute("SELECT (SELECT count(*) FROM virtual_users) AS u, (SELECT count(*) FROM virtual_aliases)"
                       " AS a, (SELECT count(*) FROM portal_mailbox_removals) AS r,"
                       " (SELECT count(*) FROM virtual_domains) AS d").fetchone()
    assert after == before
    assert db.execute("SELECT count(*) AS n FROM portal_audit_log WHERE action = 'domain.delete'"
                      ).fetchone()["n"] == 0
    # gunicorn replaced the worker; the portal answers again.
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(base + "/healthz", timeout=2).close()  # noqa: S310 - loopback
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.2)


def _form_fields(html: str) -> dict:
    fields = dict(re.findall(r'<input [^>]*?name="([^"]+)"[^>]*?value="([^"]*)"', html))
    textarea = re.search(r'(?s)<textarea [^>]*name="destinations"[^>]*>(.*?)</textarea>', html)
    if textarea:
        fields["destinations"] = textarea.group(1).strip()
    return fields


@pytest.fixture
def two_admins(app, db):
    from tests.conftest import make_client
    from tests.conftest import sign_in

    for address in ("ann@edit.example", "ben@edit.example", "user@edit.example"):
        make_mailbox(db, address, PASSWORD)
    for address in ("ann@edit.example", "ben@edit.example"):
        app.test_cli_runner().invoke(args=["admin", "grant", "domain-admin", address, "edit.example"])
    app.test_cli_runner().invoke(args=["alias", "add", "team@edit.example", "user@edit.example"])
    clients = []
    for address in ("ann@edit.example", "ben@edit.example"):
        client = make_client(app)
        assert sign_in(client, address, PASSWORD).status_code == 302
        clients.append(client)
    return clients


def test_the_second_of_two_mailbox_edits_is_told_and_loses_nothing(two_admins, db):
    ann, ben = two_admins
    url = "/admin/domains/edit.example/mailboxes/user@edit.example"
    ann_form, ben_form = _form_fields(ann.get(url).get_data(as_text=True)), _form_fields(ben.get(url).get_data(
        as_text=True))
    assert ann.post(url, data={**ann_form, "display_name": "Set by Ann", "active": "y"}).status_code == 302
    response = ben.post(url, data={**ben_form, "display_name": "Set by Ben", "quota": "1 GB", "active": "y"})
    page = response.get_data(as_text=True)
    assert response.status_code == 409 and "Someone else changed user@edit.example" in page
    assert 'value="Set by Ann"' in page  # the form now shows what Ann saved
    row = db.execute("SELECT display_name, quota_bytes FROM virtual_users WHERE email = 'user@edit.example'"
                     ).fetchone()
    assert row == {"display_name": "Set by Ann", "quota_bytes": 0}
    # Saving again from the refreshed form works.
    again = _form_fields(page)
    assert ben.post(url, data={**again, "quota": "1 GB", "active": "y"}).status_code == 302


def test_the_second_of_two_alias_edits_is_told_and_loses_nothing(two_admins, db):
    ann, ben = two_admins
    url = "/admin/domains/edit.example/aliases/team@edit.example"
    ann_form, ben_form = _form_fields(ann.get(url).get_data(as_text=True)), _form_fields(ben.get(url).get_data(
        as_text=True))
    assert ann.post(url, data={**ann_form, "destinations": "ann@edit.example"}).status_code == 302
    response = ben.post(url, data={**ben_form, "destinations": "ben@edit.example"})
    assert response.status_code == 409
    assert "Someone else changed team@edit.example" in response.get_data(as_text=True)
    rows = db.execute("SELECT destination FROM virtual_aliases WHERE source = 'team@edit.example'").fetchall()
    assert [r["destination"] for r in rows] == ["ann@edit.example"]


def test_a_hanging_postgresql_gives_503_within_seconds(app_factory, db, silent_server):
    from tests.conftest import csrf_token
    from tests.conftest import make_client

    app = app_factory(DATABASE_URL=f"postgresql://portal:x@127.0.0.1:{silent_server}/mailportal",
                      DB_CONNECT_TIMEOUT=2, DB_POOL_TIMEOUT=2.0)
    client = make_client(app)
    token = csrf_token(client, "/auth/login")  # the form itself needs no database
    started = time.monotonic()
    response = client.post("/auth/login", data={"csrf_token": token, "address": "a@b.example", "password": "x" * 12})
    took = time.monotonic() - started
    assert response.status_code == 503 and took < 6, (response.status_code, took)
    assert "Traceback" not in response.get_data(as_text=True)


def test_an_exhausted_pool_gives_503_to_the_next_request_not_a_hung_worker(app_factory, db, silent_server):
    """One connection in the pool, held elsewhere: the next page answers 503 fast; a hung Dovecot gives 503 too."""
    from portal.db import get_pool
    from tests.conftest import csrf_token
    from tests.conftest import make_client

    make_mailbox(db, "wait@pool.example", PASSWORD)
    app = app_factory(DB_POOL_MIN_SIZE=1, DB_POOL_MAX_SIZE=1, DB_POOL_TIMEOUT=1.0, IMAP_PORT=silent_server,
                      IMAP_TIMEOUT=6.0, IMAP_AUTH_TIMEOUT=6.0)
    waiting = make_client(app)
    token = csrf_token(waiting, "/auth/login")
    answers = []
    holder = threading.Thread(target=lambda: answers.append(waiting.post(
        "/auth/login", data={"csrf_token": token, "address": "wait@pool.example", "password": PASSWORD}).status_code))
    holder.start()
    time.sleep(1.0)  # the sign-in waits for the hung Dovecot, holding no connection (tests/test_signin.py)
    other = make_client(app)
    other_token = csrf_token(other, "/auth/login")
    pool = get_pool(app)
    held = pool.getconn()  # as a slow request elsewhere in this worker would
    try:
        started = time.monotonic()
        response = other.post("/auth/login", data={"csrf_token": other_token, "address": "wait@pool.example",
                                                   "password": PASSWORD})
        took = time.monotonic() - started
    finally:
        pool.putconn(held)
    holder.join(timeout=20)
    assert response.status_code == 503 and took < 3, (response.status_code, took)
    assert answers == [503]  # the hung Dovecot: a clear 503 too, not a hang


def test_the_second_of_two_domain_settings_edits_is_told(app, db):
    from tests.conftest import make_client
    from tests.conftest import sign_in

    for address in ("one@top.example", "two@top.example"):
        make_mailbox(db, address, PASSWORD)
        app.test_cli_runner().invoke(args=["admin", "grant", "superadmin", address])
    make_mailbox(db, "x@set.example", PASSWORD)
    one, two = make_client(app), make_client(app)
    assert sign_in(one, "one@top.example", PASSWORD).status_code == 302
    assert sign_in(two, "two@top.example", PASSWORD).status_code == 302
    url = "/admin/domains/set.example/settings"
    one_form, two_form = _form_fields(one.get(url).get_data(as_text=True)), _form_fields(two.get(url).get_data(
        as_text=True))
    assert one.post(url, data={**one_form, "active": "y", "max_mailboxes": "7"}).status_code == 302
    make_mailbox(db, "y@set.example", PASSWORD)  # counters change the row, not the settings: no conflict from that
    response = two.post(url, data={**two_form, "active": "y", "max_mailboxes": "9", "max_aliases": "3"})
    page = response.get_data(as_text=True)
    assert response.status_code == 409 and "Someone else changed the settings of set.example" in page
    assert 'value="7"' in page
    row = db.execute("SELECT max_mailboxes, max_aliases FROM virtual_domains WHERE name = 'set.example'").fetchone()
    assert row == {"max_mailboxes": 7, "max_aliases": 0}
