"""Helpdesk: reset, unlock, disable and enable, proven against the real Dovecot and Postfix; scope and refusals."""

from __future__ import annotations

import re
import smtplib

import pytest
from imapclient.exceptions import LoginError

from tests.conftest import csrf_token
from tests.conftest import grant_and_sign_in
from tests.conftest import make_client
from tests.conftest import new_client_ip
from tests.conftest import sign_in
from tests.mail import imap_login
from tests.mail import make_mailbox
from tests.mail import send_mail

# Touches Dovecot or Postfix: scripts/test runs it on the other Debian release too.
pytestmark = pytest.mark.mail_server

PASSWORD = "a long enough test password 12"
USER = "user@a.example"
USER_PASSWORD = "the user's own password 12"
NEW = "copper meadow lantern 77 orbit"


@pytest.fixture
def people(app, db):
    make_mailbox(db, USER, USER_PASSWORD)
    for address in ("help@a.example", "dadmin@a.example", "root@a.example", "other@b.example", "bhelp@b.example"):
        make_mailbox(db, address, PASSWORD)
    clients = grant_and_sign_in(
        app, [("helpdesk", "help@a.example", "a.example"), ("domain-admin", "dadmin@a.example", "a.example"),
              ("superadmin", "root@a.example"), ("helpdesk", "bhelp@b.example", "b.example")],
        {"help": "help@a.example", "dadmin": "dadmin@a.example", "root": "root@a.example",
         "bhelp": "bhelp@b.example"}, PASSWORD)
    db.execute("DELETE FROM portal_audit_log")
    return clients


def post(client, address: str, action: str, **data):
    token = csrf_token(client, f"/helpdesk/mailboxes/{address}")
    return client.post(f"/helpdesk/mailboxes/{address}/{action}", data={"csrf_token": token, **data})


def audit_rows(db, action: str | None = None) -> list[dict]:
    rows = db.execute("SELECT * FROM portal_audit_log ORDER BY id").fetchall()
    return [r for r in rows if action is None or r["action"] == action]


def user_row(db) -> dict:
    return db.execute("SELECT * FROM virtual_users WHERE email = %s", (USER,)).fetchone()


def assert_imap_accepts(mail_stack, address: str, password: str) -> None:
    imap_login(mail_stack.imap_port, address, password, client_ip=new_client_ip()).logout()


def assert_imap_refuses(mail_stack, address: str, password: str) -> None:
    with pytest.raises(LoginError, match="AUTHENTICATIONFAILED"):
        imap_login(mail_stack.imap_port, address, password, client_ip=new_client_ip())


def test_reset_end_to_end(app, people, db, mail_stack):
    user = make_client(app)
    assert sign_in(user, USER, USER_PASSWORD).status_code == 302
    assert user.get("/").status_code == 200

    response = post(people["help"], USER, "reset")
    assert response.status_code == 200
    temporary = re.search(r'<p class="secret"><code>([^<]+)</code>', response.get_data(as_text=True)).group(1)
    assert re.fullmatch(r"[a-z2-9]{5}(-[a-z2-9]{5}){3}", temporary)

    # The user's open portal session is over; over IMAP the old password fails, and so does the one-time one:
    # the helpdesk member who read it cannot use it for mail.
    assert user.get("/").status_code == 302
    assert_imap_refuses(mail_stack, USER, USER_PASSWORD)
    assert_imap_refuses(mail_stack, USER, temporary)

    # Signing in with it leads straight to the password page, and nowhere else, until it is changed.
    user = make_client(app)
    assert sign_in(user, USER, temporary).headers["Location"] == "/account/password"
    assert user.get("/account/forwarding").headers["Location"] == "/account/password"
    token = csrf_token(user, "/account/password")
    response = user.post("/account/password", data={"csrf_token": token, "current_password": temporary,
                                                     "new_password": NEW, "confirm_password": NEW})
    assert response.status_code == 302
    assert user.get("/account/forwarding").status_code == 200

    assert_imap_accepts(mail_stack, USER, NEW)
    assert_imap_refuses(mail_stack, USER, temporary)
    assert_imap_refuses(mail_stack, USER, USER_PASSWORD)

    (reset,) = audit_rows(db, "mailbox.password_reset")
    assert (reset["actor"], reset["actor_role"], reset["target"], reset["domain"]) == (
        "help@a.example", "helpdesk", USER, "a.example")
    assert reset["summary"]["must_change"] is True and reset["summary"]["sessions_ended"] == 1
    everything = str([dict(r) for r in audit_rows(db)])
    assert temporary not in everything and NEW not in everything and "$6$" not in everything
    assert [r["action"] for r in audit_rows(db)] == ["mailbox.password_reset", "password.change"]


def test_reset_password_is_not_kept_anywhere_but_the_response(people, db):
    response = post(people["help"], USER, "reset")
    temporary = re.search(r'<code>([^<]+)</code>', response.get_data(as_text=True)).group(1)
    assert response.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in response.headers or temporary not in response.headers["Set-Cookie"]
    assert user_row(db)["password"].startswith("{SHA512-CRYPT}$6$") or user_row(db)["password"].startswith("$6$")
    assert temporary not in str(dict(user_row(db)))


@pytest.mark.parametrize("target", ["other@b.example", "dadmin@a.example", "root@a.example", "help@a.example",
                                    "nobody@b.example"])
@pytest.mark.parametrize("action", ["reset", "unlock", "disable", "enable"])
def test_helpdesk_of_a_cannot_touch_other_domains_or_role_holders(people, db, target, action):
    before = db.execute("SELECT email, password, active, password_must_change FROM virtual_users ORDER BY id"
                        ).fetchall()
    assert people["help"].get(f"/helpdesk/mailboxes/{target}").status_code == 403
    token = csrf_token(people["help"], "/helpdesk/")
    response = people["help"].post(f"/helpdesk/mailboxes/{target}/{action}",
                                   data={"csrf_token": token, "reason": "testing"})
    assert response.status_code == 403
    after = db.execute("SELECT email, password, active, password_must_change FROM virtual_users ORDER BY id"
                       ).fetchall()
    assert after == before and audit_rows(db) == []


def test_missing_mailbox_in_scope_is_404_and_out_of_scope_403_alike(people):
    assert people["help"].get("/helpdesk/mailboxes/nobody@a.example").status_code == 404
    assert people["help"].get("/helpdesk/mailboxes/nobody@b.example").status_code == 403
    assert people["help"].get("/helpdesk/mailboxes/other@b.example").status_code == 403
    assert people["help"].get("/helpdesk/mailboxes/not-an-address").status_code == 404


def test_helpdesk_list_shows_only_its_domains(people):
    html = people["help"].get("/helpdesk/").get_data(as_text=True)
    assert USER in html and "other@b.example" not in html
    assert f'href="/helpdesk/mailboxes/{USER}"' in html
    assert 'href="/helpdesk/mailboxes/dadmin@a.example"' not in html  # shown, but not to act on
    html = people["root"].get("/helpdesk/?q=other").get_data(as_text=True)
    assert "other@b.example" in html


def test_nobody_helps_themselves(people):
    assert people["root"].get("/helpdesk/mailboxes/root@a.example").status_code == 403
    assert post(people["root"], USER, "unlock").status_code == 302  # the superadmin may help others


def test_domain_admin_and_superadmin_do_helpdesk_actions_in_their_scope(people, db, mail_stack):
    assert post(people["dadmin"], USER, "reset").status_code == 200
    assert people["dadmin"].get("/helpdesk/mailboxes/other@b.example").status_code == 403
    assert post(people["root"], "dadmin@a.example", "disable", reason="left the company").status_code == 302
    rows = audit_rows(db)
    assert [(r["actor"], r["actor_role"], r["action"], r["target"]) for r in rows] == [
        ("dadmin@a.example", "domain_admin", "mailbox.password_reset", USER),
        ("root@a.example", "superadmin", "mailbox.disable", "dadmin@a.example"),
    ]


def lock_out(db, failures: int = 10) -> None:
    db.execute("INSERT INTO portal_login_throttle (kind, key, failures, window_started_at, locked_until)"
               " VALUES ('account', %s, %s, now(), now() + interval '15 minutes')", (USER, failures))


def test_unlock_lets_a_locked_out_user_sign_in(app, people, db):
    lock_out(db)
    user = make_client(app)
    assert sign_in(user, USER, USER_PASSWORD).status_code == 429
    counted = db.execute("SELECT failures FROM portal_login_throttle WHERE key = %s", (USER,)).fetchone()["failures"]
    assert counted >= 10  # the refused attempt may count too
    page = people["help"].get(f"/helpdesk/mailboxes/{USER}").get_data(as_text=True)
    assert "locked until" in page and f"({counted} failures)" in page

    response = post(people["help"], USER, "unlock")
    assert response.status_code == 302
    assert f"user@a.example is unlocked: {counted} failed sign-ins forgotten." in people["help"].get(
        response.headers["Location"]).get_data(as_text=True)
    assert sign_in(make_client(app), USER, USER_PASSWORD).status_code == 302
    (row,) = audit_rows(db)
    assert row["action"] == "mailbox.unlock" and row["summary"]["failures"] == counted

    # Nothing left to clear: said so, and no second audit row.
    response = post(people["help"], USER, "unlock")
    assert "had no failed sign-ins to forget" in people["help"].get(response.headers["Location"]).get_data(
        as_text=True)
    assert len(audit_rows(db)) == 1


def test_disable_with_a_reason_then_enable(app, people, db, mail_stack):
    user = make_client(app)
    assert sign_in(user, USER, USER_PASSWORD).status_code == 302

    response = post(people["help"], USER, "disable", reason="  ")
    assert response.status_code == 400
    assert "Say why the mailbox is disabled." in response.get_data(as_text=True)
    response = post(people["help"], USER, "disable", reason="phishing\nvictim")
    assert response.status_code == 400 and "one line" in response.get_data(as_text=True)
    assert user_row(db)["active"] is True and audit_rows(db) == []

    response = post(people["help"], USER, "disable", reason="Compromised, ticket 4711")
    assert response.status_code == 302
    assert user_row(db)["active"] is False and user_row(db)["disabled_reason"] == "Compromised, ticket 4711"
    assert user.get("/").status_code == 302  # its session is over
    assert_imap_refuses(mail_stack, USER, USER_PASSWORD)
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send_mail(mail_stack.smtp_port, USER, "while disabled")
    page = people["help"].get(f"/helpdesk/mailboxes/{USER}").get_data(as_text=True)
    assert "disabled</strong>: Compromised, ticket 4711" in page

    assert post(people["help"], USER, "enable", reason="").status_code == 302
    assert user_row(db)["active"] is True and user_row(db)["disabled_reason"] == ""
    assert_imap_accepts(mail_stack, USER, USER_PASSWORD)
    assert [(r["action"], r["summary"].get("reason")) for r in audit_rows(db)] == [
        ("mailbox.disable", "Compromised, ticket 4711"), ("mailbox.enable", None)]


def test_lookup_shows_the_state(people, db):
    db.execute("INSERT INTO virtual_aliases (domain_id, source, destination)"
               " SELECT domain_id, email, 'elsewhere@remote.example' FROM virtual_users WHERE email = %s", (USER,))
    post(people["help"], USER, "disable", reason="on leave")
    page = people["help"].get(f"/helpdesk/mailboxes/{USER}").get_data(as_text=True)
    assert "to elsewhere@remote.example, keeping no copy" in page
    assert "mailbox disabled" in page and "reason: on leave" in page
    assert "Enable" in page


def test_helpdesk_cannot_use_admin_pages(people):
    for path in ("/admin/", "/admin/domains/a.example/mailboxes", f"/admin/domains/a.example/mailboxes/{USER}",
                 "/admin/roles", "/admin/audit"):
        assert people["help"].get(path).status_code == 403, path


def test_the_audit_row_names_the_role_that_allowed_the_action(app, people, db):
    # dadmin administers a.example and is helpdesk of every domain too.
    assert app.test_cli_runner().invoke(args=["admin", "grant", "helpdesk", "dadmin@a.example"]).exit_code == 0
    assert post(people["dadmin"], "other@b.example", "unlock").status_code == 302
    assert post(people["dadmin"], USER, "unlock").status_code == 302
    lock_out(db)
    db.execute("DELETE FROM portal_audit_log")
    db.execute("INSERT INTO portal_login_throttle (kind, key, failures, window_started_at)"
               " VALUES ('account', 'other@b.example', 2, now())")
    post(people["dadmin"], "other@b.example", "unlock")
    post(people["dadmin"], USER, "unlock")
    assert [(r["target"], r["actor_role"]) for r in audit_rows(db)] == [
        ("other@b.example", "helpdesk"), (USER, "domain_admin")]
