"""Dashboard and password change, proven against the real Dovecot."""

from __future__ import annotations

import re

import pytest
from imapclient.exceptions import LoginError

from tests.conftest import csrf_token
from tests.conftest import make_client
from tests.conftest import new_client_ip
from tests.conftest import sign_in
from tests.mail import imap_login
from tests.mail import make_mailbox

# Touches Dovecot or Postfix: scripts/test runs it on the other Debian release too.
pytestmark = pytest.mark.mail_server

ALICE = "alice@portal.example"
OLD = "Alice's mailbox password 1"
NEW = "lantern orbit velvet canyon 42"


@pytest.fixture
def alice(db):
    return make_mailbox(db, ALICE, OLD)


@pytest.fixture
def signed_in(app, alice):
    client = make_client(app)
    assert sign_in(client, ALICE, OLD).status_code == 302
    return client


def change_password(client, current: str, new: str, confirm: str | None = None):
    data = {
        "csrf_token": csrf_token(client, "/account/password"),
        "current_password": current,
        "new_password": new,
        "confirm_password": new if confirm is None else confirm,
    }
    return client.post("/account/password", data=data)


def stored_hash(db) -> str:
    return db.execute("SELECT password FROM virtual_users WHERE email = %s", (ALICE,)).fetchone()["password"]


def assert_imap_accepts(mail_stack, password: str) -> None:
    imap_login(mail_stack.imap_port, ALICE, password, client_ip=new_client_ip()).logout()


def assert_imap_refuses(mail_stack, password: str) -> None:
    with pytest.raises(LoginError, match="AUTHENTICATIONFAILED"):
        imap_login(mail_stack.imap_port, ALICE, password, client_ip=new_client_ip())


def test_dashboard_shows_the_address_and_what_comes(signed_in):
    page = signed_in.get("/").get_data(as_text=True)
    assert ALICE in page
    for path in ("/account/password", "/account/forwarding", "/account/storage"):
        assert f'href="{path}"' in page


def test_dashboard_says_where_mail_goes_and_how_full_the_mailbox_is(signed_in, db, mail_stack):
    page = signed_in.get("/").get_data(as_text=True)
    assert "is delivered to your mailbox. Nothing is forwarded." in page
    db.execute("UPDATE virtual_users SET quota_bytes = 1000000 WHERE email = %s", (ALICE,))
    db.execute("INSERT INTO portal_quota_usage (email, bytes, messages) VALUES (%s, 930000, 7)", (ALICE,))
    response = signed_in.post("/account/forwarding", data={
        "csrf_token": csrf_token(signed_in, "/account/forwarding"), "destinations": "elsewhere@remote.example"})
    assert response.status_code == 302

    page = signed_in.get("/").get_data(as_text=True)
    assert "is forwarded to the addresses below only" in page and "<li>elsewhere@remote.example</li>" in page
    assert re.search(r'<meter class="usage-bar"[^>]*max="1000000"[^>]*value="930000"', page)
    assert "(93&nbsp;%), 7 messages." in page
    assert "Your mailbox is almost full (93&nbsp;%)." in page


def test_dashboard_lists_recent_sign_ins_newest_first_and_keeps_ten(app, alice, db):
    addresses = [f"198.51.100.{n}" for n in range(1, 13)]
    for address in addresses:
        assert sign_in(make_client(app, address), ALICE, OLD).status_code == 302
    kept = db.execute("SELECT host(client_addr) AS a FROM portal_sign_ins ORDER BY id").fetchall()
    assert [r["a"] for r in kept] == addresses[2:]

    latest = make_client(app, "2001:db8::77")
    assert sign_in(latest, ALICE, OLD).status_code == 302
    page = latest.get("/").get_data(as_text=True)
    section = page[page.index('id="sign-ins-heading"'):]
    shown = re.findall(r"from ([0-9a-f.:]+)</span>", section[:section.index("</section>")])
    assert shown == ["2001:db8::77", "198.51.100.12", "198.51.100.11", "198.51.100.10", "198.51.100.9"]


def test_a_password_change_is_not_listed_as_a_sign_in(signed_in, db, mail_stack):
    before = db.execute("SELECT count(*) AS n FROM portal_sign_ins").fetchone()["n"]
    assert change_password(signed_in, OLD, NEW).status_code == 302
    assert db.execute("SELECT count(*) AS n FROM portal_sign_ins").fetchone()["n"] == before == 1


def test_password_change_end_to_end(app, signed_in, db, mail_stack):
    other_browser = make_client(app)
    assert sign_in(other_browser, ALICE, OLD).status_code == 302
    copied_cookie = signed_in.get_cookie("portal_session").value

    response = change_password(signed_in, OLD, NEW)

    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert "Your password has been changed" in signed_in.get("/").get_data(as_text=True)
    # Dovecot: the new password works over real IMAP, the old one does not.
    assert_imap_accepts(mail_stack, NEW)
    assert_imap_refuses(mail_stack, OLD)
    # Written as Dovecot reads it, with its scheme and 5,000 rounds.
    assert re.fullmatch(r"\{SHA512-CRYPT\}\$6\$[^$]{16}\$[./0-9A-Za-z]{86}", stored_hash(db))
    # Every other session ended, a copied cookie included; this browser got a new one.
    assert other_browser.get("/").status_code == 302
    thief = make_client(app)
    thief.set_cookie("portal_session", copied_cookie)
    assert thief.get("/").status_code == 302
    assert signed_in.get("/").status_code == 200
    assert db.execute("SELECT count(*) AS n FROM portal_sessions").fetchone()["n"] == 1
    row = db.execute("SELECT password_changed_at, password_must_change FROM virtual_users").fetchone()
    assert row["password_changed_at"] is not None and row["password_must_change"] is False


def test_password_change_is_audited_without_secrets(signed_in, db):
    change_password(signed_in, OLD, NEW)
    rows = db.execute("SELECT actor, actor_role, action, target, domain, summary, client_addr FROM portal_audit_log")
    rows = rows.fetchall()
    assert len(rows) == 1
    row = rows[0]
    assert (row["actor"], row["actor_role"], row["action"], row["target"], row["domain"]) == (
        ALICE, "user", "password.change", ALICE, "portal.example"
    )
    assert row["client_addr"] is not None
    text = repr(row)
    for secret in (OLD, NEW, stored_hash(db), "$6$"):
        assert secret not in text


def test_new_password_signs_in_to_the_portal(app, signed_in):
    change_password(signed_in, OLD, NEW)
    assert sign_in(make_client(app), ALICE, NEW).status_code == 302
    assert "incorrect" in sign_in(make_client(app), ALICE, OLD).get_data(as_text=True)


@pytest.mark.parametrize(
    ("current", "new", "confirm", "message"),
    [
        ("not my password", NEW, None, "The current password is not correct."),
        (OLD, NEW, NEW + "x", "The two new passwords are not the same."),
        (OLD, "short pw", None, "Use at least 12 characters."),
        (OLD, "x" * 1025, None, "Use at most 1024 characters."),
        (OLD, "password1234", None, "too easy to guess"),
        (OLD, "aaaaaaaaaaaaaaaa", None, "too easy to guess"),
        (OLD, ALICE, None, "must not be your address"),
        (OLD, OLD, None, "must differ from the current one"),
        (OLD, "", None, "Enter a new password."),
        ("", NEW, None, "Enter your current password."),
    ],
)
def test_bad_password_changes_are_explained_and_change_nothing(signed_in, db, mail_stack, current, new, confirm,
                                                               message):
    before = stored_hash(db)
    response = change_password(signed_in, current, new, confirm)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert stored_hash(db) == before
    assert db.execute("SELECT count(*) AS n FROM portal_audit_log").fetchone()["n"] == 0
    assert signed_in.get("/").status_code == 200
    assert_imap_accepts(mail_stack, OLD)


def test_wrong_current_passwords_are_throttled(app_factory, db, alice):
    app = app_factory(LOGIN_ACCOUNT_MAX_FAILURES=2)
    client = make_client(app)
    sign_in(client, ALICE, OLD)
    change_password(client, "wrong one", NEW)
    change_password(client, "wrong two", NEW)
    response = change_password(client, OLD, NEW)
    assert response.status_code == 429
    assert "Too many wrong passwords" in response.get_data(as_text=True)


def test_password_change_needs_csrf(signed_in, db):
    before = stored_hash(db)
    response = signed_in.post(
        "/account/password", data={"current_password": OLD, "new_password": NEW, "confirm_password": NEW}
    )
    assert response.status_code == 400
    assert stored_hash(db) == before


def test_forced_change_comes_first(app, alice, db, mail_stack):
    db.execute("UPDATE virtual_users SET password_must_change = true")
    client = make_client(app)
    response = sign_in(client, ALICE, OLD)
    assert response.headers["Location"] == "/account/password"
    assert client.get("/").headers["Location"] == "/account/password"
    assert "Your password was reset" in client.get("/account/password").get_data(as_text=True)

    assert change_password(client, OLD, NEW).status_code == 302
    assert client.get("/").status_code == 200
    assert db.execute("SELECT password_must_change FROM virtual_users").fetchone()["password_must_change"] is False
    assert db.execute("SELECT summary FROM portal_audit_log").fetchone()["summary"]["was_forced"] is True
    assert_imap_refuses(mail_stack, OLD)


@pytest.mark.parametrize(("scheme", "pattern"), [
    ("SHA512-CRYPT", r"\{SHA512-CRYPT\}\$6\$"),
    ("BLF-CRYPT", r"\{BLF-CRYPT\}\$2y\$10\$"),
    ("ARGON2ID", r"\{ARGON2ID\}\$argon2id\$v=19\$m=65536,t=3,p=1\$"),
])
def test_each_scheme_is_read_by_dovecot(app_factory, alice, db, mail_stack, scheme, pattern):
    app = app_factory(PASSWORD_SCHEME=scheme)
    client = make_client(app)
    sign_in(client, ALICE, OLD)
    assert change_password(client, OLD, NEW).status_code == 302
    assert re.match(pattern, stored_hash(db))
    assert_imap_accepts(mail_stack, NEW)
    assert_imap_refuses(mail_stack, OLD)


def test_long_bcrypt_password_works_with_dovecot(app_factory, alice, db, mail_stack):
    long_password = "ünïcödé " * 12  # 96 characters, over bcrypt's 72 bytes
    app = app_factory(PASSWORD_SCHEME="BLF-CRYPT")
    client = make_client(app)
    sign_in(client, ALICE, OLD)
    assert change_password(client, OLD, long_password).status_code == 302
    assert_imap_accepts(mail_stack, long_password)


def test_password_page_needs_sign_in(client):
    response = client.get("/account/password")
    assert response.status_code == 302 and response.headers["Location"].startswith("/auth/login")
