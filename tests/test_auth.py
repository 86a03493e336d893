"""Sign-in through the real Dovecot: answers, throttling, penalty isolation, sessions, redirects."""

from __future__ import annotations

import re
import socket
import threading
import time

import guide_server
import psycopg
import psycopg.sql
import pytest
import stack

from tests.conftest import csrf_token
from tests.conftest import make_client
from tests.conftest import new_client_ip
from tests.conftest import sign_in
from tests.mail import imap_login
from tests.mail import make_mailbox

# Touches Dovecot or Postfix: scripts/test runs it on the other Debian release too.
pytestmark = pytest.mark.mail_server

ALICE = "alice@portal.example"
ALICE_PASSWORD = "Alice's mailbox password 1"
BOB = "bob@portal.example"
BOB_PASSWORD = "bob-has-another-password-2"
WRONG = "The address or password is incorrect."


@pytest.fixture
def alice(db):
    return make_mailbox(db, ALICE, ALICE_PASSWORD)


@pytest.fixture
def bob(db):
    return make_mailbox(db, BOB, BOB_PASSWORD)


def page_text(response) -> str:
    return response.get_data(as_text=True)


def without_tokens(html: str) -> str:
    """The page without its CSRF token and the typed address, to compare two answers."""
    html = re.sub(r'value="[^"]*"', 'value=""', html)
    return html


def throttle_rows(db) -> list[dict]:
    """The counters that hold at least one attempt (an attempt taken back leaves a zero)."""
    return db.execute(
        "SELECT kind, key, failures FROM portal_login_throttle WHERE failures > 0 ORDER BY kind, key"
    ).fetchall()


# --- success and failure ---------------------------------------------------------------------


def test_sign_in_lands_on_the_dashboard(client, alice, db):
    response = sign_in(client, ALICE, ALICE_PASSWORD)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    dashboard = client.get("/")
    assert dashboard.status_code == 200
    assert ALICE in page_text(dashboard)
    assert dashboard.headers["Cache-Control"] == "no-store"
    sessions = db.execute("SELECT user_id, client_addr FROM portal_sessions").fetchall()
    assert [s["user_id"] for s in sessions] == [alice]


def test_session_cookie_holds_no_password(app, alice):
    client = make_client(app)
    sign_in(client, ALICE, ALICE_PASSWORD)
    cookie = client.get_cookie("portal_session")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"
    from flask.sessions import SecureCookieSessionInterface

    serializer = SecureCookieSessionInterface().get_signing_serializer(app)
    contents = repr(serializer.loads(cookie.value))
    assert ALICE_PASSWORD not in contents
    assert "password" not in contents.lower()


@pytest.mark.parametrize("typed", ["  Alice@Portal.EXAMPLE ", "ALICE@portal.example", "alice@portal.example."])
def test_address_is_normalised(client, alice, typed):
    response = sign_in(client, typed, ALICE_PASSWORD)
    assert response.status_code == 302


def test_unknown_address_and_wrong_password_look_the_same(app, alice):
    timings, pages = [], []
    for address, password in [(ALICE, "not the password"), ("nobody@portal.example", ALICE_PASSWORD)]:
        client = make_client(app)
        token = csrf_token(client, "/auth/login")
        started = time.monotonic()
        response = client.post("/auth/login", data={"csrf_token": token, "address": address, "password": password})
        timings.append(time.monotonic() - started)
        assert response.status_code == 200
        assert WRONG in page_text(response)
        pages.append(without_tokens(page_text(response)))
    assert pages[0] == pages[1]
    # Dovecot delays every failed authentication the same way (auth_failure_delay).
    assert abs(timings[0] - timings[1]) < 0.5, timings


@pytest.mark.parametrize(
    "password",
    [
        "with spaces and = signs and more",
        "quotes ' and \" and \\ backslash",
        "비밀번호는 한국어로도 됩니다",
        "ünïcödé pässwörd ✓ 2026",
        '"{literal}" ) A1 LOGOUT',
    ],
)
def test_passwords_with_special_characters_work_end_to_end(client, db, password):
    make_mailbox(db, "special@portal.example", password)
    assert sign_in(client, "special@portal.example", password).status_code == 302


INJECTED_ADDRESSES = [
    "alice@portal.example\r\nA1 LOGOUT",
    "alice@portal.example\nA1 LOGOUT",
    "alice@portal.example\x00",
    "alice\x00@portal.example",
    'alice" "x@portal.example',
    "alice@portal.example\r\n",
    "{5}\r\nalice@portal.example",
    "a" * 300 + "@portal.example",
    "x" * 5000,
    "\u212aing@portal.example",
]


@pytest.mark.parametrize("address", INJECTED_ADDRESSES)
def test_malformed_addresses_never_reach_dovecot(app, alice, address, db):
    client = make_client(app)
    started = time.monotonic()
    response = sign_in(client, address, ALICE_PASSWORD)
    assert response.status_code == 400
    assert "Enter a valid e-mail address" in page_text(response) or "too long" in page_text(response)
    # Refused before any socket was opened: no Dovecot round trip, nothing counted.
    assert time.monotonic() - started < 1.0
    assert throttle_rows(db) == []


@pytest.mark.parametrize(
    "password",
    ["x\r\nA2 LOGOUT", "x\nA2 CAPABILITY", "{3}\r\nabc", "x" * 1024],
)
def test_odd_passwords_are_just_wrong(client, alice, password):
    response = sign_in(client, ALICE, password)
    assert response.status_code == 200
    assert WRONG in page_text(response)


@pytest.mark.parametrize(("password", "message"), [("x\x00y", "cannot be used"), ("x" * 1025, "too long")])
def test_unusable_passwords_are_refused_before_dovecot(client, alice, password, message):
    response = sign_in(client, ALICE, password)
    assert response.status_code == 400
    assert message in page_text(response)


def test_empty_fields_are_explained(client):
    response = sign_in(client, "", "")
    assert response.status_code == 400
    assert "Enter your e-mail address." in page_text(response)
    assert "Enter your password." in page_text(response)


# --- disabled mailboxes ------------------------------------------------------------------------


@pytest.fixture
def lenient_dovecot(mail_stack):
    """A Dovecot on the test database with the guide's password_query, which ignores active flags."""
    instance = stack.Instance("lenient", mail_stack.db_name, imap_port=12243, lmtp_port=12224, smtp_port=12225)
    sql_conf = guide_server.dovecot_sql(stack.dovecot_series(), **stack.db_context(mail_stack.db_name),
                                      mail_root=str(instance.mail_root))
    stack.render_dovecot(instance, sql_conf=sql_conf, static_userdb=True)
    stack.start_dovecot(instance, restart=True)
    yield instance
    stack.stop_dovecot(instance)


@pytest.mark.parametrize("what", ["mailbox", "domain"])
def test_disabled_account_cannot_sign_in_even_if_dovecot_says_yes(app_factory, db, alice, lenient_dovecot, what):
    table = "virtual_users" if what == "mailbox" else "virtual_domains"
    db.execute(psycopg.sql.SQL("UPDATE {} SET active = false").format(psycopg.sql.Identifier(table)))
    imap_login(lenient_dovecot.imap_port, ALICE, ALICE_PASSWORD).logout()  # Dovecot itself accepts

    app = app_factory(IMAP_PORT=lenient_dovecot.imap_port)
    response = sign_in(make_client(app), ALICE, ALICE_PASSWORD)
    assert response.status_code == 403
    assert "This mailbox is disabled" in page_text(response)
    assert db.execute("SELECT count(*) AS n FROM portal_sessions").fetchone()["n"] == 0


def test_disabled_mailbox_is_refused_by_the_shipped_dovecot_query(client, db, alice):
    db.execute("UPDATE virtual_users SET active = false")
    response = sign_in(client, ALICE, ALICE_PASSWORD)
    assert response.status_code == 200 and WRONG in page_text(response)


# --- Dovecot unavailable -------------------------------------------------------------------------


@pytest.fixture
def stopped_dovecot(mail_stack):
    stack.stop_dovecot(mail_stack)
    yield
    stack.start_dovecot(mail_stack)


def test_dovecot_stopped_gives_503_and_counts_nothing(client, alice, db, stopped_dovecot):
    started = time.monotonic()
    response = sign_in(client, ALICE, ALICE_PASSWORD)
    assert time.monotonic() - started < 3
    assert response.status_code == 503
    assert "mail server is not answering" in page_text(response)
    assert throttle_rows(db) == []


def test_dovecot_hanging_gives_503_within_the_timeout(app_factory, db, alice, silent_server):
    app = app_factory(IMAP_PORT=silent_server, IMAP_TIMEOUT=1.5)
    started = time.monotonic()
    response = sign_in(make_client(app), ALICE, ALICE_PASSWORD)
    assert time.monotonic() - started < 3
    assert response.status_code == 503
    assert throttle_rows(db) == []


@pytest.fixture
def greets_then_hangs():
    """Greets like an IMAP server, answers ID, then never answers AUTHENTICATE."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()

    def serve():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            conn.sendall(b"* OK [CAPABILITY IMAP4rev1 ID AUTH=PLAIN] ready\r\n")
            reader = conn.makefile("rb")
            while not stop.is_set():
                line = reader.readline()
                if not line:
                    break
                tag = line.split(b" ", 1)[0]
                if b" ID " in line:
                    conn.sendall(b"* ID NIL\r\n" + tag + b" OK ID completed\r\n")
                elif b"AUTHENTICATE" in line:
                    conn.sendall(b"+ \r\n")  # then silence
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    listener.close()
    thread.join()


def test_dovecot_hanging_on_the_password_check_gives_503(app_factory, db, alice, greets_then_hangs):
    app = app_factory(IMAP_PORT=greets_then_hangs, IMAP_TIMEOUT=1.0, IMAP_AUTH_TIMEOUT=1.5)
    started = time.monotonic()
    response = sign_in(make_client(app), ALICE, ALICE_PASSWORD)
    assert time.monotonic() - started < 3
    assert response.status_code == 503
    assert throttle_rows(db) == []


def test_dovecot_answering_unavailable_gives_503(client, db, alice, mail_stack):
    # Dovecot's SQL lookup fails, so it answers NO [UNAVAILABLE]; the portal's own database is fine.
    reader = psycopg.sql.Identifier(stack.DB_MAIL_READER)
    db.execute(psycopg.sql.SQL("REVOKE SELECT ON virtual_users FROM {}").format(reader))
    try:
        with pytest.raises(Exception, match="UNAVAILABLE"):
            imap_login(mail_stack.imap_port, ALICE, ALICE_PASSWORD, client_ip=new_client_ip())
        started = time.monotonic()
        response = sign_in(client, ALICE, ALICE_PASSWORD)
        # Within seconds: the main passdb's failure ends the lookup (not once more per app-password slot).
        assert time.monotonic() - started < 5
    finally:
        db.execute(psycopg.sql.SQL("GRANT SELECT ON virtual_users TO {}").format(reader))
    assert response.status_code == 503
    assert "mail server is not answering" in page_text(response)
    assert throttle_rows(db) == []


# --- throttling ----------------------------------------------------------------------------------


def test_account_is_locked_after_repeated_failures_across_app_instances(app_factory, db, alice):
    settings = {"LOGIN_ACCOUNT_MAX_FAILURES": 3, "LOGIN_LOCKOUT": 600}
    first, second = app_factory(**settings), app_factory(**settings)
    guesser = new_client_ip()
    # Different browsers on one client address, two portal instances: the count lives in PostgreSQL.
    for app in (first, second, first):
        assert WRONG in page_text(sign_in(make_client(app, guesser), ALICE, "wrong password"))

    started = time.monotonic()
    response = sign_in(make_client(second, guesser), ALICE, ALICE_PASSWORD)  # even the right password
    assert time.monotonic() - started < 1.0  # refused without asking Dovecot
    assert response.status_code == 429
    assert 540 <= int(response.headers["Retry-After"]) <= 600
    assert "Too many failed sign-in attempts" in page_text(response)
    assert "Please try again in 10 minutes" in page_text(response)
    # The owner, from their own address, is not locked out by someone else's guesses.
    assert sign_in(make_client(first), ALICE, ALICE_PASSWORD).status_code == 302
    # Another account is not affected.
    make_mailbox(db, BOB, BOB_PASSWORD)
    assert sign_in(make_client(first), BOB, BOB_PASSWORD).status_code == 302


def test_unknown_addresses_are_locked_the_same_way(app_factory, db):
    app = app_factory(LOGIN_ACCOUNT_MAX_FAILURES=2)
    guesser = new_client_ip()
    for _ in range(2):
        sign_in(make_client(app, guesser), "ghost@portal.example", "whatever")
    assert sign_in(make_client(app, guesser), "ghost@portal.example", "whatever").status_code == 429


def test_success_clears_the_account_counter(app_factory, db, alice):
    app = app_factory(LOGIN_ACCOUNT_MAX_FAILURES=3)
    sign_in(make_client(app), ALICE, "wrong password")
    assert sign_in(make_client(app), ALICE, ALICE_PASSWORD).status_code == 302
    assert [r for r in throttle_rows(db) if r["kind"] == "account"] == []


def test_client_address_is_locked_across_accounts(app_factory, db, alice, bob):
    app = app_factory(LOGIN_CLIENT_MAX_FAILURES=2)
    attacker = new_client_ip()
    for address in ("carol@portal.example", "dave@portal.example"):
        sign_in(make_client(app, attacker), address, "guess")
    assert sign_in(make_client(app, attacker), BOB, BOB_PASSWORD).status_code == 429
    # Someone else, elsewhere, signs in as usual.
    assert sign_in(make_client(app), ALICE, ALICE_PASSWORD).status_code == 302


def test_forwarded_for_is_ignored_without_trusted_proxies(app_factory, db, alice):
    app = app_factory(LOGIN_CLIENT_MAX_FAILURES=2)
    attacker = new_client_ip()
    for n in range(2):
        client = make_client(app, attacker)
        client.environ_base["HTTP_X_FORWARDED_FOR"] = f"203.0.113.{n + 1}"
        sign_in(client, f"guess{n}@portal.example", "guess")
    keys = {r["key"] for r in throttle_rows(db) if r["kind"] == "client"}
    assert keys == {attacker}
    assert sign_in(make_client(app, attacker), ALICE, ALICE_PASSWORD).status_code == 429


def test_forwarded_for_is_used_behind_a_trusted_proxy(app_factory, db, alice):
    app = app_factory(TRUSTED_PROXY_COUNT=1)
    client = make_client(app, "127.0.0.1")  # the proxy
    client.environ_base["HTTP_X_FORWARDED_FOR"] = "203.0.113.77"
    sign_in(client, ALICE, "wrong password")
    keys = {r["key"] for r in throttle_rows(db) if r["kind"] == "client"}
    assert keys == {"203.0.113.77"}


def test_dovecot_penalty_falls_on_the_failing_client_only(app_factory, db, alice, bob):
    """One client's failures must not slow everyone else's sign-in (Dovecot's auth penalty)."""
    app = app_factory(LOGIN_ACCOUNT_MAX_FAILURES=50, LOGIN_CLIENT_MAX_FAILURES=50)
    attacker, other = new_client_ip(), new_client_ip()
    for _ in range(3):
        sign_in(make_client(app, attacker), ALICE, "wrong password")

    client_b = make_client(app, other)
    token = csrf_token(client_b, "/auth/login")
    started = time.monotonic()
    response = client_b.post("/auth/login", data={"csrf_token": token, "address": BOB, "password": BOB_PASSWORD})
    elapsed_b = time.monotonic() - started
    assert response.status_code == 302
    assert elapsed_b < 1.0, f"client B waited {elapsed_b:.2f} s"

    # The penalty is real and stays with the attacker's address: its next valid login is delayed.
    client_a = make_client(app, attacker)
    token = csrf_token(client_a, "/auth/login")
    started = time.monotonic()
    response = client_a.post("/auth/login", data={"csrf_token": token, "address": BOB, "password": BOB_PASSWORD})
    assert response.status_code == 302
    assert time.monotonic() - started > 1.5


# --- sessions ------------------------------------------------------------------------------------


def replay(app, cookie_value: str):
    """A new browser that presents a copied session cookie."""
    thief = make_client(app)
    thief.set_cookie("portal_session", cookie_value)
    return thief.get("/")


def test_logout_ends_the_session_server_side(app, alice, db):
    client = make_client(app)
    sign_in(client, ALICE, ALICE_PASSWORD)
    stolen = client.get_cookie("portal_session").value
    assert replay(app, stolen).status_code == 200  # the copy works while the session lives

    response = client.post("/auth/logout", data={"csrf_token": csrf_token(client, "/")})
    assert response.status_code == 302 and response.headers["Location"] == "/auth/login"
    assert db.execute("SELECT count(*) AS n FROM portal_sessions").fetchone()["n"] == 0
    again = replay(app, stolen)
    assert again.status_code == 302 and again.headers["Location"].startswith("/auth/login")


def test_logout_needs_post_and_csrf(app, alice):
    client = make_client(app)
    sign_in(client, ALICE, ALICE_PASSWORD)
    assert client.get("/auth/logout").status_code == 405
    assert client.post("/auth/logout").status_code == 400
    assert client.get("/").status_code == 200


@pytest.mark.parametrize("column", ["last_seen_at", "created_at"])
def test_idle_and_absolute_timeouts(client, alice, db, column):
    sign_in(client, ALICE, ALICE_PASSWORD)
    assert client.get("/").status_code == 200
    db.execute(psycopg.sql.SQL("UPDATE portal_sessions SET {} = now() - interval '2 days'").format(
        psycopg.sql.Identifier(column)
    ))
    assert client.get("/").status_code == 302


def test_disabling_a_mailbox_ends_its_sessions(client, alice, db):
    sign_in(client, ALICE, ALICE_PASSWORD)
    db.execute("UPDATE virtual_users SET active = false")
    assert client.get("/").status_code == 302


def test_a_pre_login_session_is_not_kept(app, alice):
    client = make_client(app)
    csrf_token(client, "/auth/login")
    before = client.get_cookie("portal_session").value
    sign_in(client, ALICE, ALICE_PASSWORD)
    assert client.get_cookie("portal_session").value != before


# --- redirects -----------------------------------------------------------------------------------


def test_next_brings_the_user_back(client, alice):
    response = client.get("/account/password")
    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/login?next=%2Faccount%2Fpassword"
    page = page_text(client.get(response.headers["Location"]))
    assert 'value="/account/password"' in page
    assert sign_in(client, ALICE, ALICE_PASSWORD, next_url="/account/password").headers["Location"] == (
        "/account/password"
    )


@pytest.mark.parametrize(
    "target",
    ["//evil.example/", "https://evil.example/", "/\\evil.example", "\\\\evil.example", "http:evil.example",
     "javascript:alert(1)", "/\r\nLocation: https://evil.example", " //evil.example"],
)
def test_open_redirects_are_refused(client, alice, target):
    response = sign_in(client, ALICE, ALICE_PASSWORD, next_url=target)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_signed_in_user_visiting_login_goes_home(client, alice):
    sign_in(client, ALICE, ALICE_PASSWORD)
    assert client.get("/auth/login").headers["Location"] == "/"


def test_login_requires_csrf(app_factory, db, alice):
    app = app_factory()
    response = make_client(app).post("/auth/login", data={"address": ALICE, "password": ALICE_PASSWORD})
    assert response.status_code == 400


# --- found in review --------------------------------------------------------------------------------


def test_parallel_guesses_cannot_outrun_the_throttle(app_factory, db, alice):
    # Ten requests at once in one process need ten connections (gunicorn's sync
    # workers serve one request per process; this test uses threads).
    # The cap on one client's sign-ins in flight is lifted, so that the throttle alone is tested.
    app = app_factory(LOGIN_ACCOUNT_MAX_FAILURES=3, LOGIN_CLIENT_MAX_FAILURES=1000, DB_POOL_MAX_SIZE=10,
                      LOGIN_CLIENT_MAX_IN_FLIGHT=100)
    guesser = new_client_ip()
    clients = [make_client(app, guesser) for _ in range(10)]
    tokens = [csrf_token(c, "/auth/login") for c in clients]
    statuses = []

    def guess(client, token, n):
        response = client.post("/auth/login", data={"csrf_token": token, "address": ALICE, "password": f"guess {n}"})
        statuses.append(response.status_code)

    threads = [threading.Thread(target=guess, args=(c, t, n)) for n, (c, t) in enumerate(zip(clients, tokens,
                                                                                            strict=True))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses.count(200) <= 3  # no more than the limit reached Dovecot
    assert statuses.count(429) >= 7
    assert sign_in(make_client(app, guesser), ALICE, ALICE_PASSWORD).status_code == 429


def test_a_client_without_an_ip_address_can_sign_in(app, alice, db):
    client = make_client(app, "")  # e.g. gunicorn behind nginx on a unix socket
    assert sign_in(client, ALICE, ALICE_PASSWORD).status_code == 302
    assert client.get("/").status_code == 200
    assert db.execute("SELECT client_addr FROM portal_sessions").fetchone()["client_addr"] is None


def test_ipv6_clients_are_counted_per_64(app_factory, db, alice):
    app = app_factory(LOGIN_CLIENT_MAX_FAILURES=2)
    for suffix in ("1", "2"):
        sign_in(make_client(app, f"2001:db8:5:6::{suffix}"), f"x{suffix}@portal.example", "guess")
    keys = {r["key"] for r in throttle_rows(db) if r["kind"] == "client"}
    assert keys == {"2001:db8:5:6::/64"}
    assert sign_in(make_client(app, "2001:db8:5:6:ffff::9"), ALICE, ALICE_PASSWORD).status_code == 429
    assert sign_in(make_client(app, "2001:db8:5:7::1"), ALICE, ALICE_PASSWORD).status_code == 302


def test_database_down_while_signed_in_gives_the_503_page(app_factory, db, alice, mail_stack):
    app = app_factory(DB_POOL_TIMEOUT=1.0)
    client = make_client(app)
    sign_in(client, ALICE, ALICE_PASSWORD)
    stack.stop_cluster()
    try:
        started = time.monotonic()
        response = client.get("/")
        assert time.monotonic() - started < 4
    finally:
        stack.start_cluster()
    assert response.status_code == 503
    assert "database is not answering" in page_text(response)


def test_session_cookie_lives_no_longer_than_the_absolute_timeout(app_factory, db, alice):
    app = app_factory(SESSION_ABSOLUTE_TIMEOUT=3600)
    client = make_client(app)
    response = sign_in(client, ALICE, ALICE_PASSWORD)
    cookie_header = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith("portal_session="))
    expires = re.search(r"Expires=([^;]+)", cookie_header).group(1)
    from email.utils import parsedate_to_datetime

    lifetime = parsedate_to_datetime(expires).timestamp() - time.time()
    assert 3500 < lifetime <= 3600


def test_throttle_rows_are_purged(db):
    from datetime import timedelta

    from portal.queries import throttle

    db.execute(
        "INSERT INTO portal_login_throttle VALUES ('account', 'old@x.example', 3, now() - interval '2 hours', NULL),"
        " ('account', 'locked@x.example', 9, now() - interval '2 hours', now() + interval '1 hour'),"
        " ('account', 'fresh@x.example', 1, now(), NULL)"
    )
    assert throttle.purge_expired(db, timedelta(minutes=15)) == 1
    assert {r["key"] for r in throttle_rows(db)} == {"locked@x.example", "fresh@x.example"}


# --- transport security to Dovecot --------------------------------------------------------------------


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_sign_in_over_tls_with_the_servers_certificate(app_factory, db, alice, mail_stack, security):
    port = mail_stack.imap_port if security == "starttls" else mail_stack.imaps_port
    app = app_factory(IMAP_SECURITY=security, IMAP_PORT=port, IMAP_TLS_CA_FILE=str(mail_stack.tls_cert))
    assert sign_in(make_client(app), ALICE, ALICE_PASSWORD).status_code == 302
    assert WRONG in page_text(sign_in(make_client(app), ALICE, "wrong password"))
    assert app.test_client().get("/healthz").status_code == 200


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_untrusted_certificate_is_refused(app_factory, db, alice, mail_stack, security):
    port = mail_stack.imap_port if security == "starttls" else mail_stack.imaps_port
    app = app_factory(IMAP_SECURITY=security, IMAP_PORT=port)  # system CAs do not know the stack's certificate
    response = sign_in(make_client(app), ALICE, ALICE_PASSWORD)
    assert response.status_code == 503
    assert throttle_rows(db) == []


def test_tls_without_verification_still_encrypts(app_factory, db, alice, mail_stack):
    app = app_factory(IMAP_SECURITY="tls", IMAP_PORT=mail_stack.imaps_port, IMAP_TLS_VERIFY=False)
    assert sign_in(make_client(app), ALICE, ALICE_PASSWORD).status_code == 302


def test_plain_imap_on_the_tls_port_is_unavailable_not_wrong(app_factory, db, alice, mail_stack):
    app = app_factory(IMAP_SECURITY="plain", IMAP_PORT=mail_stack.imaps_port, IMAP_TIMEOUT=1.0)
    assert sign_in(make_client(app), ALICE, ALICE_PASSWORD).status_code == 503


# --- the lockout cannot be made permanent, and the owner keeps a way in -------------------------------


def lock_end(db, kind: str, key: str):
    return db.execute("SELECT locked_until FROM portal_login_throttle WHERE kind = %s AND key = %s",
                      (kind, key)).fetchone()["locked_until"]


def test_attempts_refused_by_a_lock_neither_count_nor_extend_it(app_factory, db, alice):
    app = app_factory(LOGIN_ACCOUNT_MAX_FAILURES=2, LOGIN_LOCKOUT=600)
    guesser = new_client_ip()
    for _ in range(2):
        sign_in(make_client(app, guesser), ALICE, "wrong password")
    pair = f"{ALICE}|{guesser}"
    first_end = lock_end(db, "pair", pair)
    assert first_end is not None
    failures = db.execute("SELECT failures FROM portal_login_throttle WHERE kind = 'pair' AND key = %s",
                          (pair,)).fetchone()["failures"]
    for password in ("wrong again", ALICE_PASSWORD, "and again"):  # one every so often, as the attacker
        time.sleep(0.3)
        assert sign_in(make_client(app, guesser), ALICE, password).status_code == 429
    assert lock_end(db, "pair", pair) == first_end  # a fixed end
    assert db.execute("SELECT failures FROM portal_login_throttle WHERE kind = 'pair' AND key = %s",
                      (pair,)).fetchone()["failures"] == failures
    # Meanwhile the owner, from another address, signs in.
    assert sign_in(make_client(app), ALICE, ALICE_PASSWORD).status_code == 302


def test_many_addresses_guessing_together_lock_the_account_for_a_fixed_time(app_factory, db, alice):
    app = app_factory(LOGIN_ACCOUNT_MAX_FAILURES=5, LOGIN_ACCOUNT_ALL_CLIENTS_MAX_FAILURES=3, LOGIN_LOCKOUT=600)
    for _ in range(3):
        sign_in(make_client(app), ALICE, "a distributed guess")  # each from an address of its own
    end = lock_end(db, "account", ALICE)
    assert end is not None
    response = sign_in(make_client(app), ALICE, ALICE_PASSWORD)
    assert response.status_code == 429 and 540 <= int(response.headers["Retry-After"]) <= 600
    time.sleep(0.3)
    assert sign_in(make_client(app), ALICE, "more").status_code == 429
    assert lock_end(db, "account", ALICE) == end


def test_a_helpdesk_unlock_lifts_every_lock_on_the_account(app_factory, db, alice):
    from portal.queries import throttle

    app = app_factory(LOGIN_ACCOUNT_MAX_FAILURES=1)
    guesser = new_client_ip()
    sign_in(make_client(app, guesser), ALICE, "wrong password")
    assert throttle.pairs_locked(db, ALICE) == 1
    with db.transaction():
        throttle.clear_account(db, ALICE)
    assert sign_in(make_client(app, guesser), ALICE, ALICE_PASSWORD).status_code == 302
