"""Two-step sign-in (TOTP, recovery codes) and app passwords, against the real Dovecot, Postfix and PostgreSQL.

App passwords are proven by real IMAP logins and SMTP AUTH on the submission port through Postfix; the
restriction of the main password by a real IMAP login refused on the mail-client port while the portal, on its
own listener, still signs in with it.
"""

from __future__ import annotations

import re
import smtplib
import ssl
import time
from email.message import EmailMessage

import pyotp
import pytest
from imapclient.exceptions import LoginError

from portal import second_factor
from tests.conftest import csrf_token
from tests.conftest import make_client
from tests.conftest import new_client_ip
from tests.conftest import sign_in
from tests.mail import imap_login
from tests.mail import make_mailbox
from tests.mail import wait_for_maildir_message
from tests.test_doveadm import is_ended
from tests.test_doveadm import open_session

pytestmark = pytest.mark.mail_server

PASSWORD = "a long enough test password 8"
ALICE = "alice@f.example"
BOB = "bob@f.example"  # alice's helpdesk
DORA = "dora@f.example"  # domain admin
ROOT = "root@g.example"  # superadmin


@pytest.fixture
def people(app, db):
    ids = {address: make_mailbox(db, address, PASSWORD) for address in (ALICE, BOB, DORA, ROOT)}
    runner = app.test_cli_runner()
    for args in (["helpdesk", BOB, "f.example"], ["domain-admin", DORA, "f.example"], ["superadmin", ROOT]):
        assert runner.invoke(args=["admin", "grant", *args]).exit_code == 0
    return ids


def signed_in(app, address: str, password: str = PASSWORD):
    client = make_client(app, ip=new_client_ip())
    assert sign_in(client, address, password).status_code == 302
    return client


def enrol_totp(client, password: str = PASSWORD) -> tuple[str, list[str]]:
    """Set up an authenticator app through the pages; return its secret and the recovery codes shown."""
    token = csrf_token(client, "/account/security")
    assert client.post("/account/security/totp/start", data={"csrf_token": token}).status_code == 302
    page = client.get("/account/security/totp").get_data(as_text=True)
    svg = re.search(r"<svg.*?</svg>", page, re.S).group(0)  # drawn here: no script, no outside service
    assert "<script" not in svg and "http" not in svg.replace("http://www.w3.org/2000/svg", "")
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page).group(1)
    answer = client.post("/account/security/totp", data={"csrf_token": csrf_token(client, "/account/security/totp"),
                                                          "code": pyotp.TOTP(secret).now(),
                                                          "current_password": password})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    codes = re.findall(r"<li><code>([a-z0-9-]{19})</code></li>", answer.get_data(as_text=True))
    assert len(codes) == 10
    return secret, codes


def second_step(client, code: str):
    return client.post("/auth/second-factor", data={"csrf_token": csrf_token(client, "/auth/second-factor"),
                                                    "code": code})


def next_code(secret: str) -> str:
    """A code of the next 30-second step (accepted: one step of drift), unused so far."""
    return pyotp.TOTP(secret).at(time.time() + 30)


def make_app_password(client, name: str, services: list[str]) -> str:
    token = csrf_token(client, "/account/app-passwords")
    page = client.post("/account/app-passwords", data={"csrf_token": token, "name": name, "services": services,
                                                       "current_password": PASSWORD})
    assert page.status_code == 200, page.get_data(as_text=True)
    assert page.headers["Cache-Control"] == "no-store"
    return re.search(r'id="new-app-password">([a-z0-9-]+)<', page.get_data(as_text=True)).group(1)


def imap_ok(mail_stack, address: str, password: str) -> bool:
    try:
        imap_login(mail_stack.imap_port, address, password, client_ip=new_client_ip()).logout()
    except LoginError:
        return False
    return True


def smtp_auth(mail_stack, address: str, password: str, subject: str) -> None:
    """Send one message to bob through Postfix's submission service, signed in with SMTP AUTH."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = address, BOB, subject
    message.set_content("sent with an app password")
    with smtplib.SMTP("127.0.0.1", mail_stack.submission_port, timeout=10) as smtp:
        smtp.starttls(context=ssl.create_default_context(cafile=str(mail_stack.tls_cert)))
        smtp.login(address, password)
        smtp.send_message(message)


def test_totp_enrolment_then_sign_in_needs_the_code_once(app, people):
    client = signed_in(app, ALICE)
    secret, _codes = enrol_totp(client)

    other = make_client(app, ip=new_client_ip())
    first = sign_in(other, ALICE, PASSWORD)
    assert first.status_code == 302 and first.location.endswith("/auth/second-factor")
    # A stolen password alone reaches none of the account's pages.
    for path in ("/", "/account/forwarding", "/account/security", "/account/app-passwords"):
        assert other.get(path).status_code == 302
    assert second_step(other, "000000").status_code == 200
    code = next_code(secret)
    assert second_step(other, code).status_code == 302
    assert other.get("/").status_code == 200

    # The same code again, in another browser: refused (a TOTP code is accepted once).
    third = make_client(app, ip=new_client_ip())
    assert sign_in(third, ALICE, PASSWORD).location.endswith("/auth/second-factor")
    refused = second_step(third, code)
    assert "used already" in refused.get_data(as_text=True)
    assert third.get("/").status_code == 302


def test_a_recovery_code_signs_in_once(app, people):
    _secret, codes = enrol_totp(signed_in(app, ALICE))
    first = make_client(app, ip=new_client_ip())
    sign_in(first, ALICE, PASSWORD)
    answer = second_step(first, codes[3].upper())
    assert answer.status_code == 302
    assert first.get("/").status_code == 200
    again = make_client(app, ip=new_client_ip())
    sign_in(again, ALICE, PASSWORD)
    assert second_step(again, codes[3]).status_code == 200
    assert again.get("/").status_code == 302


def test_the_password_step_answers_alike_with_and_without_a_second_factor(app, people):
    enrol_totp(signed_in(app, ALICE))
    for address in (ALICE, BOB):
        wrong = make_client(app, ip=new_client_ip())
        page = sign_in(wrong, address, "not the password at all")
        assert page.status_code == 200 and "The address or password is incorrect." in page.get_data(as_text=True)


def test_second_factor_failures_are_throttled_like_passwords(app_factory, db, people):
    app = app_factory(LOGIN_ACCOUNT_MAX_FAILURES=3)
    enrol_totp(signed_in(app, ALICE))
    client = make_client(app, ip=new_client_ip())
    sign_in(client, ALICE, PASSWORD)
    statuses = [second_step(client, f"{n:06d}").status_code for n in range(4)]
    assert statuses[:3] == [200, 200, 200] and statuses[3] == 429


def test_the_wrong_code_that_locks_the_second_step_warns_the_owner_once(app_factory, db, people, mail_stack):
    app = app_factory(LOGIN_ACCOUNT_MAX_FAILURES=3)
    enrol_totp(signed_in(app, ALICE))
    client = make_client(app, ip=new_client_ip())
    sign_in(client, ALICE, PASSWORD)
    for n in range(4):
        second_step(client, f"{n:06d}").close()  # closed, as a WSGI server does: queued mail goes then
    warning = wait_for_maildir_message(mail_stack.mail_root / "f.example" / "alice",
                                       f"Someone knows the password of {ALICE}")
    text = next(part.get_payload(decode=True).decode() for part in warning.walk()
                if part.get_content_type() == "text/plain")
    assert "followed by 3 wrong codes" in " ".join(text.split())
    assert not re.search(r"\b\d{6}\b", text)  # no code typed is repeated
    rows = db.execute("SELECT count(*) AS n FROM portal_outbox WHERE kind = 'second_step_locked'").fetchone()
    assert rows["n"] == 1  # the refused fourth attempt warns no more


def test_an_unenrolled_admin_reaches_only_the_enrolment_page(app_factory, db, people):
    app = app_factory(SECOND_FACTOR_REQUIRED_ROLES=["superadmin", "domain_admin", "helpdesk"])
    for address in (BOB, DORA, ROOT):
        client = signed_in(app, address)
        for path in ("/", "/admin/", "/helpdesk/", "/account/api-tokens", "/account/forwarding"):
            answer = client.get(path)
            assert answer.status_code == 302 and answer.location.endswith("/account/security"), (address, path)
        assert client.get("/account/security").status_code == 200
        enrol_totp(client)
        assert client.get("/").status_code == 200
    # An ordinary user is not asked to enrol.
    assert signed_in(app, ALICE).get("/").status_code == 200


def test_app_passwords_work_in_imap_and_smtp_and_stop_when_revoked(app, people, mail_stack):
    client = signed_in(app, ALICE)
    phone = make_app_password(client, "phone", ["imap", "smtp"])
    laptop = make_app_password(client, "laptop", ["imap"])
    assert imap_ok(mail_stack, ALICE, phone) and imap_ok(mail_stack, ALICE, laptop)
    smtp_auth(mail_stack, ALICE, phone, "sent by the phone")
    wait_for_maildir_message(mail_stack.mail_root / "f.example" / "bob", "sent by the phone")
    with pytest.raises(smtplib.SMTPAuthenticationError):  # laptop's is for IMAP only
        smtp_auth(mail_stack, ALICE, laptop, "sent by the laptop")
    # An app password is no key to the portal.
    assert sign_in(make_client(app, ip=new_client_ip()), ALICE, phone).status_code == 200

    page = client.get("/account/app-passwords").get_data(as_text=True)
    assert phone not in page and laptop not in page  # shown once
    revoke = re.search(r'action="(/account/app-passwords/\d+/revoke)"[^>]*>\s*<input[^>]*>\s*<button[^>]*Revoke phone',
                       page)
    assert client.post(revoke.group(1), data={"csrf_token": csrf_token(client, "/account/app-passwords")}
                       ).status_code == 302
    assert not imap_ok(mail_stack, ALICE, phone)
    assert imap_ok(mail_stack, ALICE, laptop)


def test_app_passwords_are_stored_as_hashes(app, db, people):
    password = make_app_password(signed_in(app, ALICE), "tablet", ["imap"])
    [row] = db.execute("SELECT password FROM portal_app_passwords").fetchall()
    assert password not in row["password"] and row["password"].startswith("{SHA512-CRYPT}")
    audit = db.execute("SELECT summary::text AS s FROM portal_audit_log WHERE action = 'app_password.create'"
                       ).fetchone()["s"]
    assert password not in audit


def test_enrolling_keeps_mail_clients_to_app_passwords(app, people, mail_stack):
    client = signed_in(app, ALICE)
    assert imap_ok(mail_stack, ALICE, PASSWORD)
    secret, _codes = enrol_totp(client)
    # The main password now fails in IMAP and in SMTP AUTH...
    assert not imap_ok(mail_stack, ALICE, PASSWORD)
    with pytest.raises(smtplib.SMTPAuthenticationError):
        smtp_auth(mail_stack, ALICE, PASSWORD, "main password")
    # Dovecot itself still takes it on the portal's own listener, from the portal's address (no fallback here:
    # this is Dovecot's answer alone)...
    imap_login(mail_stack.portal_imap_port, ALICE, PASSWORD, client_ip=new_client_ip()).logout()
    # ...and it still signs in to the portal, where the second step follows.
    other = make_client(app, ip=new_client_ip())
    assert sign_in(other, ALICE, PASSWORD).location.endswith("/auth/second-factor")
    assert second_step(other, next_code(secret)).status_code == 302
    # An app password works meanwhile.
    assert imap_ok(mail_stack, ALICE, make_app_password(other, "phone", ["imap"]))
    # The user may let mail clients use the main password again.
    token = csrf_token(other, "/account/security")
    assert other.post("/account/security/mail-clients", data={"csrf_token": token}).status_code == 400
    assert imap_ok(mail_stack, ALICE, PASSWORD) is False  # not without the current password
    assert other.post("/account/security/mail-clients", data={"csrf_token": token, "current_password": PASSWORD}
                      ).status_code == 302
    assert imap_ok(mail_stack, ALICE, PASSWORD)


def test_the_first_factor_signs_out_the_other_sessions_and_mail_connections(app, db, people, mail_stack):
    # Someone with the stolen password: a portal session and a mail connection, opened before the owner enrols.
    thief = signed_in(app, ALICE)
    thief_mail = open_session(mail_stack, ALICE, PASSWORD)
    owner = signed_in(app, ALICE)
    secret, _codes = enrol_totp(owner)
    # The thief's session is gone; the owner's is not.
    assert thief.get("/").status_code == 302
    assert owner.get("/").status_code == 200
    assert is_ended(thief_mail)
    row = db.execute("SELECT summary FROM portal_audit_log WHERE action = 'second_factor.add' AND target = %s",
                     (ALICE,)).fetchone()
    assert row["summary"] == {"kind": "totp", "first": True, "sessions_ended": 1}
    # Sessions opened after it passed the second step, and stay: making new recovery codes ends none of them.
    later = signed_in(app, ALICE)
    assert second_step(later, next_code(secret)).status_code == 302
    token = csrf_token(owner, "/account/security")
    assert owner.post("/account/security/recovery-codes", data={"csrf_token": token, "current_password": PASSWORD}
                      ).status_code == 200
    assert later.get("/").status_code == 200


def require_app_passwords(client, domain: str, on: bool):
    token = csrf_token(client, f"/admin/domains/{domain}/settings")
    return client.post(f"/admin/domains/{domain}/app-passwords",
                       data={"csrf_token": token, **({"required": "1"} if on else {})})


def test_a_domain_admin_requires_app_passwords_for_the_domain(app, db, people, mail_stack):
    assert imap_ok(mail_stack, ALICE, PASSWORD)
    helpdesk = signed_in(app, BOB)
    assert require_app_passwords(helpdesk, "f.example", True).status_code == 403  # not the helpdesk's to decide
    admin = signed_in(app, DORA)
    assert require_app_passwords(admin, "f.example", True).status_code == 302
    assert not imap_ok(mail_stack, ALICE, PASSWORD)
    client = signed_in(app, ALICE)  # the portal still signs in with it
    assert imap_ok(mail_stack, ALICE, make_app_password(client, "phone", ["imap"]))
    assert "Your domain asks every mail program" in client.get("/account/security").get_data(as_text=True)
    assert require_app_passwords(admin, "f.example", False).status_code == 302
    assert imap_ok(mail_stack, ALICE, PASSWORD)
    assert db.execute("SELECT count(*) AS n FROM portal_audit_log WHERE action = 'domain.app_passwords'"
                      ).fetchone()["n"] == 2


def test_a_password_reset_by_the_helpdesk_revokes_app_passwords(app, db, people, mail_stack):
    phone = make_app_password(signed_in(app, ALICE), "phone", ["imap"])
    helpdesk = signed_in(app, BOB)
    token = csrf_token(helpdesk, f"/helpdesk/mailboxes/{ALICE}")
    assert helpdesk.post(f"/helpdesk/mailboxes/{ALICE}/reset", data={"csrf_token": token}).status_code == 200
    assert not imap_ok(mail_stack, ALICE, phone)
    summary = db.execute("SELECT summary FROM portal_audit_log WHERE action = 'mailbox.password_reset'"
                         ).fetchone()["summary"]
    assert summary["app_passwords_revoked"] == 1


def test_a_recovery_link_asks_for_the_second_factor_too(app, db, people):
    from portal.rules import recovery as recovery_rules

    secret, codes = enrol_totp(signed_in(app, ALICE))
    db.execute("INSERT INTO portal_mailbox_settings (mailbox_id, recovery_address, recovery_verified_at)"
               " SELECT id, 'alice.home@elsewhere.example', now() FROM virtual_users WHERE email = %s"
               " ON CONFLICT (mailbox_id) DO UPDATE SET recovery_address = excluded.recovery_address,"
               " recovery_verified_at = now()", (ALICE,))
    with app.app_context():
        link = recovery_rules.request_reset(db, ALICE, None, "+")
    assert link is not None
    client = make_client(app, ip=new_client_ip())
    assert client.get(f"/auth/recover?token={link.token}").status_code == 302
    page = client.get("/auth/recover").get_data(as_text=True)
    assert 'name="code"' in page
    new = "a brand new passphrase for alice 93"
    form = {"csrf_token": csrf_token(client, "/auth/recover"), "new_password": new, "confirm_password": new}
    assert client.post("/auth/recover", data=form).status_code == 400  # no code
    assert client.post("/auth/recover", data={**form, "code": "000000"}).status_code == 400
    assert client.post("/auth/recover", data={**form, "code": codes[0]}).status_code == 302
    assert sign_in(make_client(app, ip=new_client_ip()), ALICE, new).location.endswith("/auth/second-factor")


def test_the_portal_on_a_mail_client_port_checks_a_restricted_password_itself(app_factory, db, people, mail_stack):
    app = app_factory(IMAP_PORT=mail_stack.imap_port)
    client = signed_in(app, ALICE)
    token = csrf_token(client, "/account/security")
    client.post("/account/security/mail-clients", data={"csrf_token": token, "app_passwords_only": "y",
                                                        "current_password": PASSWORD})
    assert not imap_ok(mail_stack, ALICE, PASSWORD)
    assert sign_in(make_client(app, ip=new_client_ip()), ALICE, PASSWORD).status_code == 302
    assert sign_in(make_client(app, ip=new_client_ip()), ALICE, "a wrong password here").status_code == 200


def test_helpdesk_removes_a_users_second_factor_never_an_admins(app, db, people):
    enrol_totp(signed_in(app, ALICE))
    enrol_totp(signed_in(app, DORA))
    helpdesk = signed_in(app, BOB)
    token = csrf_token(helpdesk, f"/helpdesk/mailboxes/{ALICE}")
    assert helpdesk.post(f"/helpdesk/mailboxes/{ALICE}/second-factors/remove",
                         data={"csrf_token": token}).status_code == 302
    assert helpdesk.post(f"/helpdesk/mailboxes/{DORA}/second-factors/remove",
                         data={"csrf_token": token}).status_code == 403
    # alice signs in with her password alone, and her dashboard says what happened.
    alice = make_client(app, ip=new_client_ip())
    assert sign_in(alice, ALICE, PASSWORD).location.endswith("/")
    assert "were removed on" in alice.get("/").get_data(as_text=True)
    assert db.execute("SELECT count(*) AS n FROM portal_audit_log WHERE action = 'second_factor.remove_all'"
                      ).fetchone()["n"] == 1
    # A superadmin may remove a domain admin's, not another superadmin's (that is for the command line).
    runner = app.test_cli_runner()
    root = signed_in(app, ROOT)
    token = csrf_token(root, f"/helpdesk/mailboxes/{DORA}")
    assert root.post(f"/helpdesk/mailboxes/{DORA}/second-factors/remove", data={"csrf_token": token}
                     ).status_code == 302
    other_root = make_mailbox(db, "sam@g.example", PASSWORD)
    assert other_root
    assert runner.invoke(args=["admin", "grant", "superadmin", "sam@g.example"]).exit_code == 0
    enrol_totp(signed_in(app, "sam@g.example"))
    assert root.post("/helpdesk/mailboxes/sam@g.example/second-factors/remove", data={"csrf_token": token}
                     ).status_code == 403


def test_totp_codes_are_checked_once_per_step():
    secret = second_factor.new_totp_secret()
    totp = pyotp.TOTP(secret)
    step = second_factor.totp_step(secret, totp.now(), 0)
    assert step is not None
    assert second_factor.totp_step(secret, totp.now(), step) is None
    assert second_factor.totp_step(secret, "12345", 0) is None
    assert second_factor.totp_step(secret, "abcdef", 0) is None


def test_only_the_command_line_removes_a_superadmins_second_factor(app, db, people):
    enrol_totp(signed_in(app, ROOT))
    result = app.test_cli_runner().invoke(args=["mailbox", "remove-second-factors", ROOT])
    assert result.exit_code == 0 and "removed" in result.output
    assert sign_in(make_client(app, ip=new_client_ip()), ROOT, PASSWORD).location.endswith("/")
    row = db.execute("SELECT actor_role FROM portal_audit_log WHERE action = 'second_factor.remove_all'").fetchone()
    assert row["actor_role"] == "cli"
    again = app.test_cli_runner().invoke(args=["mailbox", "remove-second-factors", ROOT])
    assert again.exit_code == 0 and "had no second factor" in again.output


def test_an_app_password_never_signs_in_to_the_portal_even_on_a_mail_client_port(app_factory, db, people,
                                                                                 mail_stack):
    app = app_factory(IMAP_PORT=mail_stack.imap_port)  # where Dovecot cannot tell the portal from a client
    client = signed_in(app, ALICE)
    phone = make_app_password(client, "phone", ["imap"])
    assert imap_ok(mail_stack, ALICE, phone)
    assert sign_in(make_client(app, ip=new_client_ip()), ALICE, phone).status_code == 200
    # Nor does it stand in for the current password.
    token = csrf_token(client, "/account/app-passwords")
    answer = client.post("/account/app-passwords", data={"csrf_token": token, "name": "tablet",
                                                         "services": ["imap"], "current_password": phone})
    assert answer.status_code == 400 and "current password is not correct" in answer.get_data(as_text=True)


def test_a_right_password_does_not_reset_the_count_of_wrong_codes(app_factory, db, people):
    app = app_factory(LOGIN_ACCOUNT_MAX_FAILURES=3)
    secret, _codes = enrol_totp(signed_in(app, ALICE))
    client = make_client(app, ip=new_client_ip())
    sign_in(client, ALICE, PASSWORD)
    assert [second_step(client, code).status_code for code in ("111111", "222222")] == [200, 200]
    other = make_client(app, ip=new_client_ip())  # the password again, from elsewhere
    assert sign_in(other, ALICE, PASSWORD).location.endswith("/auth/second-factor")
    assert second_step(other, "333333").status_code == 200  # the third wrong code locks the second step
    assert second_step(other, next_code(secret)).status_code == 429


def test_own_password_change_revokes_app_passwords(app, db, people, mail_stack):
    client = signed_in(app, ALICE)
    phone = make_app_password(client, "phone", ["imap"])
    new = "an entirely new passphrase 4411"
    token = csrf_token(client, "/account/password")
    answer = client.post("/account/password", data={"csrf_token": token, "current_password": PASSWORD,
                                                    "new_password": new, "confirm_password": new})
    assert answer.status_code == 302
    assert not imap_ok(mail_stack, ALICE, phone)
    assert imap_ok(mail_stack, ALICE, new)


def test_a_passkey_challenge_is_answered_once(app, db):
    from portal.queries import second_factors as factor_queries

    assert factor_queries.use_challenge(db, b"x" * 32)
    assert not factor_queries.use_challenge(db, b"x" * 32)


def test_making_an_app_password_or_a_second_factor_asks_the_current_password(app, db, people):
    client = signed_in(app, ALICE)
    token = csrf_token(client, "/account/app-passwords")
    answer = client.post("/account/app-passwords", data={"csrf_token": token, "name": "phone", "services": ["imap"]})
    assert answer.status_code == 400
    assert client.post("/account/security/totp/start", data={"csrf_token": token}).status_code == 302
    page = client.get("/account/security/totp").get_data(as_text=True)
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page).group(1)
    answer = client.post("/account/security/totp", data={"csrf_token": token, "code": pyotp.TOTP(secret).now(),
                                                         "current_password": "not my password at all"})
    assert answer.status_code == 400
    assert db.execute("SELECT count(*) AS n FROM portal_totp WHERE confirmed_at IS NOT NULL").fetchone()["n"] == 0
    assert db.execute("SELECT count(*) AS n FROM portal_app_passwords").fetchone()["n"] == 0


# Where an admin who has not enrolled may go: signing in and out, the enrolment pages, a forced password change,
# the public pages, and the API (which takes tokens, never the session).
BEFORE_ENROLMENT = {"auth.", "static", "bootstrap.static", "favicon", "health.", "api.", "account.security",
                    "account.totp", "account.start_totp", "account.remove_totp", "account.renew_recovery_codes",
                    "account.passkey_options", "account.add_passkey", "account.remove_passkey", "account.password"}
URL_ARGS = {"alias_id": 1, "role_id": 1, "token_id": 1, "domain": "f.example", "name": "f.example",
            "address": ALICE, "source": "team@f.example", "alias_domain": "f.test", "grant_id": 1, "state": "off",
            "passkey_id": 1, "app_password_id": 1, "filename": "style.css"}


def test_an_unenrolled_admin_gets_nothing_else_on_any_route(app_factory, db, people):
    """Every route but the allowed ones, GET and POST (with a valid CSRF token): sent to the enrolment page."""
    app = app_factory(SECOND_FACTOR_REQUIRED_ROLES=["superadmin"])
    client = signed_in(app, ROOT)
    token = csrf_token(client, "/account/security")
    before = db.execute("SELECT count(*) AS n FROM portal_audit_log").fetchone()["n"]
    odd = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(tuple(BEFORE_ENROLMENT)) or rule.endpoint in BEFORE_ENROLMENT:
            continue
        url = rule.build({arg: URL_ARGS[arg] for arg in rule.arguments}, append_unknown=False)[1]
        for method in sorted(rule.methods & {"GET", "POST"}):
            answer = client.open(url, method=method, data={"csrf_token": token, "required": "1",
                                                           "app_passwords_only": "y"})
            if not (answer.status_code == 302 and answer.location.endswith("/account/security")):
                odd.append(f"{method} {url}: {answer.status_code}")
    assert odd == []
    assert db.execute("SELECT count(*) AS n FROM portal_audit_log").fetchone()["n"] == before
