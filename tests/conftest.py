"""Fixtures: the real stack (PostgreSQL, Dovecot, Postfix), an app and a client against it."""

from __future__ import annotations

import errno
import itertools
import os
import re
import shutil
import socket
import threading
import time

import psycopg
import pytest
import stack
from psycopg.rows import dict_row

from portal import create_app
from portal.db import close_pool

TEST_SECRET_KEY = "test-secret-key-0123456789abcdef0123456789"
NOTICE_FROM = "noreply@portal.invalid"
PUBLIC_URL = "https://portal.example.test/mail"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch):
    """Keep a developer's PORTAL_* variables out of the tests."""
    for name in list(os.environ):
        if name.startswith("PORTAL_") and name != "PORTAL_STACK_DIR":
            monkeypatch.delenv(name)
    monkeypatch.delenv("FLASK_DEBUG", raising=False)


@pytest.fixture(scope="session")
def mail_stack():
    """Bring up the test instance with a fresh, migrated database."""
    return stack.up(stack.INSTANCES["test"], fresh_db=True)


@pytest.fixture(scope="session")
def database_url(mail_stack) -> str:
    return stack.database_url(mail_stack.db_name)


@pytest.fixture
def db(mail_stack, database_url):
    """A connection to the test database, emptied first (and the maildirs with it)."""
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        # Postfix's lookups and Dovecot's quota_clone write for the previous test's last deliveries (its
        # notices and bounces included) can hold the tables while they are being emptied. The TRUNCATE gives
        # up first (lock_timeout, well below deadlock_timeout), so PostgreSQL never cancels their query
        # instead: a lookup Postfix sees fail makes it defer every delivery for a minute. Then it tries again.
        conn.execute("SET lock_timeout = '300ms'")
        for attempt in range(20):
            try:
                conn.execute(
                    "TRUNCATE virtual_aliases, virtual_users, virtual_domains, portal_roles, portal_audit_log,"
                    " portal_sessions, portal_login_throttle, portal_sign_in_slots, portal_quota_usage,"
                    " portal_mailbox_removals, portal_api_tokens, portal_usage_levels, portal_outbox,"
                    " portal_recovery_requests, portal_used_challenges"
                    " RESTART IDENTITY CASCADE"
                )
                break
            except (psycopg.errors.DeadlockDetected, psycopg.errors.LockNotAvailable):
                if attempt == 19:
                    raise
                time.sleep(0.1)
        conn.execute("RESET lock_timeout")
        for child in mail_stack.mail_root.iterdir():
            remove_tree(child)
        yield conn


def remove_tree(path, seconds: float = 10.0) -> None:
    """Remove a maildir tree that Dovecot may still be writing into (a delivery of the previous test)."""
    deadline = time.monotonic() + seconds
    while path.exists():
        try:
            shutil.rmtree(path)
        except OSError as exc:  # a file landed, or moved from tmp/ to new/, while it was being emptied
            if exc.errno not in (errno.ENOTEMPTY, errno.ENOENT) or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def make_test_config(mail_stack, database_url, **overrides) -> dict:
    """Settings for an app against the test stack."""
    config = {
        "TESTING": True,
        "SECRET_KEY": TEST_SECRET_KEY,
        "DATABASE_URL": database_url,
        "IMAP_HOST": "127.0.0.1",
        "IMAP_PORT": mail_stack.portal_imap_port,
        "IMAP_SECURITY": "plain",
        "IMAP_TIMEOUT": 3.0,
        "MAIL_ROOT": str(mail_stack.mail_root),
        "DOVEADM_URL": mail_stack.doveadm_url,
        "DOVEADM_API_KEY": stack.stack_secrets()["doveadm_api_key"],
        # The portal's own mail goes out through the test stack's Postfix.
        "NOTICE_FROM": NOTICE_FROM,
        "NOTICE_SMTP_PORT": mail_stack.smtp_port,
        "PUBLIC_URL": PUBLIC_URL,
        # Second factors are asked of role holders only in their own tests (tests/test_second_factors.py).
        "SECOND_FACTOR_REQUIRED_ROLES": [],
    }
    config.update(overrides)
    return config


@pytest.fixture
def app_factory(mail_stack, database_url):
    """Build apps against the test stack; their pools are closed afterwards."""
    apps = []

    def build(**overrides):
        app = create_app(make_test_config(mail_stack, database_url, **overrides))
        apps.append(app)
        return app

    yield build
    for app in apps:
        close_pool(app)


@pytest.fixture
def app(app_factory, db):
    return app_factory()


# Made-up client addresses from the benchmarking range 198.18.0.0/15: no traffic goes
# there, they only name "the browser" to the portal and, through IMAP ID, to Dovecot,
# so that one test's failed sign-ins never slow another test's through Dovecot's penalty.
_client_numbers = itertools.count(1)


def new_client_ip() -> str:
    """Return a client address no other test has used in this run."""
    n = next(_client_numbers) + os.getpid() % 1000 * 250
    return f"198.{18 + n // 65000 % 2}.{n // 250 % 256}.{n % 250 + 1}"


def free_port() -> int:
    """A loopback TCP port nothing listens on right now, for a server a test starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_client(app, ip: str | None = None):
    """A test client whose requests come from ``ip`` (a fresh address by default)."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = new_client_ip() if ip is None else ip
    return client


@pytest.fixture
def client(app):
    return make_client(app)


_CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


def csrf_token(client, path: str) -> str:
    """Load a page and return the CSRF token of its form."""
    page = client.get(path).get_data(as_text=True)
    match = _CSRF.search(page)
    assert match, f"no CSRF token on {path}"
    return match.group(1) or match.group(2)


def sign_in(client, address: str, password: str, next_url: str | None = None):
    """Post the sign-in form as a browser would (with its CSRF token)."""
    data = {"csrf_token": csrf_token(client, "/auth/login"), "address": address, "password": password}
    if next_url is not None:
        data["next"] = next_url
    return client.post("/auth/login", data=data)


def grant_and_sign_in(app, grants: list[tuple[str, ...]], people: dict[str, str], password: str) -> dict:
    """Grant roles with the CLI (``admin grant ROLE ADDRESS [DOMAIN]``), then sign each person in.

    ``people`` maps a name to a mailbox address; returns a signed-in client per name."""
    runner = app.test_cli_runner()
    for args in grants:
        assert runner.invoke(args=["admin", "grant", *args]).exit_code == 0
    clients = {}
    for name, address in people.items():
        clients[name] = make_client(app)
        assert sign_in(clients[name], address, password).status_code == 302
    return clients


@pytest.fixture
def silent_server():
    """Accepts connections and never answers, like a hung Dovecot."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()
