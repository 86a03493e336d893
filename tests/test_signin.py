"""Sign-ins waiting on Dovecot: per-client and per-worker caps, and no database connection held meanwhile.

Dovecot answers every failed password only after auth_failure_delay (2 s), so a
wrong password is a real, slow check against the test stack's Dovecot.
"""

from __future__ import annotations

import runpy
import threading
import time
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path

import pytest

from portal.settings import DEFAULTS
from tests.conftest import csrf_token
from tests.conftest import make_client
from tests.conftest import new_client_ip
from tests.mail import make_mailbox
from tests.test_auth import ALICE
from tests.test_auth import ALICE_PASSWORD
from tests.test_auth import BOB
from tests.test_auth import BOB_PASSWORD

# Touches Dovecot or Postfix: scripts/test runs it on the other Debian release too.
pytestmark = pytest.mark.mail_server

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def mailboxes(db):
    """Alice, whose password the tests get wrong, and Bob, who signs in meanwhile."""
    make_mailbox(db, ALICE, ALICE_PASSWORD)
    make_mailbox(db, BOB, BOB_PASSWORD)


class TimedPost:
    """A sign-in POST prepared ahead (form loaded), run in a thread; keeps status, headers, text and seconds."""

    def __init__(self, app, ip: str, address: str, password: str, start: threading.Barrier | None = None):
        self.client = make_client(app, ip)
        self.data = {"csrf_token": csrf_token(self.client, "/auth/login"), "address": address, "password": password}
        self.start = start
        self.status = self.headers = self.text = self.seconds = None
        self.thread = threading.Thread(target=self._run)

    def _run(self):
        if self.start is not None:
            self.start.wait()
        started = time.monotonic()
        response = self.client.post("/auth/login", data=self.data)
        self.seconds = time.monotonic() - started
        self.status, self.headers, self.text = response.status_code, response.headers, response.get_data(as_text=True)

    def run(self) -> TimedPost:
        """Start the POST in its thread."""
        self.thread.start()
        return self

    def wait(self) -> TimedPost:
        """Wait for the POST to be answered."""
        self.thread.join(timeout=60)
        return self


def client_failures(db, ip: str) -> int:
    row = db.execute("SELECT failures FROM portal_login_throttle WHERE kind = 'client' AND key = %s",
                     (ip,)).fetchone()
    return row["failures"] if row else 0


def test_one_client_waits_on_dovecot_with_at_most_its_slots(app_factory, db, mailboxes):
    app = app_factory(LOGIN_CLIENT_MAX_IN_FLIGHT=2, LOGIN_CLIENT_MAX_FAILURES=100, LOGIN_ACCOUNT_MAX_FAILURES=100)
    guesser = new_client_ip()
    start = threading.Barrier(3)
    guesses = [TimedPost(app, guesser, ALICE, f"wrong guess {n}", start).run() for n in range(3)]
    for post in guesses:
        post.wait()

    answered = [p for p in guesses if p.status == 200]
    refused = [p for p in guesses if p.status == 429]
    assert len(answered) == 2 and len(refused) == 1, [p.status for p in guesses]
    assert all(p.seconds >= 1.5 for p in answered)  # Dovecot's failure delay: they really waited on it
    assert refused[0].seconds < 1.0  # the third was turned away at once, holding nothing
    assert refused[0].headers["Retry-After"] == "5"
    assert "Another sign-in from your network is still being checked" in refused[0].text
    assert client_failures(db, guesser) == 2  # the refused one was not counted as a failure
    # The slots are given back: the client's next sign-in is checked, and succeeds.
    assert db.execute("SELECT count(*) AS n FROM portal_sign_in_slots").fetchone()["n"] == 0
    assert TimedPost(app, guesser, BOB, BOB_PASSWORD).run().wait().status == 302


def test_other_clients_are_checked_while_one_client_fills_its_slots(app_factory, db, mailboxes):
    app = app_factory(LOGIN_CLIENT_MAX_IN_FLIGHT=1, LOGIN_CLIENT_MAX_FAILURES=100, LOGIN_ACCOUNT_MAX_FAILURES=100)
    guess = TimedPost(app, new_client_ip(), ALICE, "wrong guess").run()
    time.sleep(0.5)  # the guess now waits on Dovecot's failure delay
    other = TimedPost(app, new_client_ip(), BOB, BOB_PASSWORD).run().wait()
    assert other.status == 302 and other.seconds < 1.0
    assert guess.wait().status == 200


def test_a_worker_checks_at_most_its_cap_of_sign_ins_at_once(app_factory, db, mailboxes):
    app = app_factory(LOGIN_WORKER_MAX_IN_FLIGHT=1, LOGIN_CLIENT_MAX_FAILURES=100, LOGIN_ACCOUNT_MAX_FAILURES=100)
    guess = TimedPost(app, new_client_ip(), ALICE, "wrong guess").run()
    time.sleep(0.5)
    other_ip = new_client_ip()
    busy = TimedPost(app, other_ip, BOB, BOB_PASSWORD).run().wait()
    assert busy.status == 503 and busy.seconds < 1.0
    assert busy.headers["Retry-After"] == "5"
    assert "The portal is busy checking other sign-ins" in busy.text
    assert client_failures(db, other_ip) == 0
    assert guess.wait().status == 200
    assert TimedPost(app, other_ip, BOB, BOB_PASSWORD).run().wait().status == 302


def test_a_sign_in_waiting_on_dovecot_holds_no_database_connection(app_factory, db, mailboxes):
    # One pooled connection for the whole worker: two sign-ins waiting out Dovecot's
    # failure delay at once, and a third sign-in meanwhile, all get theirs.
    app = app_factory(DB_POOL_MIN_SIZE=1, DB_POOL_MAX_SIZE=1, DB_POOL_TIMEOUT=1.0,
                      LOGIN_CLIENT_MAX_FAILURES=100, LOGIN_ACCOUNT_MAX_FAILURES=100)
    guesses = [TimedPost(app, new_client_ip(), ALICE, f"wrong guess {n}").run() for n in range(2)]
    time.sleep(0.5)
    other = TimedPost(app, new_client_ip(), BOB, BOB_PASSWORD).run().wait()
    assert other.status == 302 and other.seconds < 1.0
    assert [g.wait().status for g in guesses] == [200, 200]


def test_slots_are_shared_through_the_database_and_free_themselves(app_factory, db, mailboxes):
    """Another worker's (or host's) slots count; a slot whose holder died frees itself when its time passes."""
    app = app_factory(LOGIN_CLIENT_MAX_IN_FLIGHT=2)
    ip = new_client_ip()
    now = datetime.now(UTC)
    db.execute("INSERT INTO portal_sign_in_slots (client_key, slot, until) VALUES (%s, 1, %s), (%s, 2, %s)",
               (ip, now + timedelta(seconds=30), ip, now + timedelta(seconds=30)))
    assert TimedPost(app, ip, ALICE, ALICE_PASSWORD).run().wait().status == 429
    db.execute("UPDATE portal_sign_in_slots SET until = now() - interval '1 second' WHERE slot = 2")
    assert TimedPost(app, ip, ALICE, ALICE_PASSWORD).run().wait().status == 302
    # The still-held slot 1 was left alone; slot 2 was taken over and given back.
    rows = db.execute("SELECT slot FROM portal_sign_in_slots WHERE client_key = %s", (ip,)).fetchall()
    assert [r["slot"] for r in rows] == [1]


def test_gunicorn_keeps_threads_for_pages_beyond_the_sign_in_cap():
    shipped = runpy.run_path(str(ROOT / "config" / "gunicorn.conf.py"))
    assert shipped["worker_class"] == "gthread"
    assert shipped["threads"] >= DEFAULTS["LOGIN_WORKER_MAX_IN_FLIGHT"] + 8
