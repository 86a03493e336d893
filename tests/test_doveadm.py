"""Ending open IMAP sessions through Dovecot's doveadm HTTP API, against the stack's real Dovecot.

A mail client that is already connected keeps reading until it disconnects,
whatever the rows now say; every change that takes a mailbox away from someone
must therefore end those connections once it is committed.
"""

from __future__ import annotations

import logging
import time

import pytest
import stack
from imapclient.exceptions import IMAPClientAbortError
from imapclient.exceptions import LoginError

from portal import doveadm
from tests.conftest import csrf_token
from tests.conftest import free_port
from tests.conftest import grant_and_sign_in
from tests.conftest import make_client
from tests.conftest import new_client_ip
from tests.conftest import sign_in
from tests.mail import imap_login
from tests.mail import make_mailbox

# Touches Dovecot or Postfix: scripts/test runs it on the other Debian release too.
pytestmark = pytest.mark.mail_server

PASSWORD = "a long enough test password 12"
NEW_PASSWORD = "copper meadow lantern 77 orbit"
DISABLE_USER = ["mailbox", "disable", "user@a.example", "--reason", "left"]


def open_session(mail_stack, address: str, password: str = PASSWORD):
    """A mail client logged in with INBOX open, as a phone keeps it."""
    client = imap_login(mail_stack.imap_port, address, password, client_ip=new_client_ip())
    client.select_folder("INBOX")
    assert client.noop()
    return client


def is_ended(client, within: float = 3.0) -> bool:
    """Whether Dovecot closed the connection (it may take a moment after the kick)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            client.noop()
        except (IMAPClientAbortError, OSError):
            client.shutdown()
            return True
        time.sleep(0.1)
    client.logout()
    return False


@pytest.fixture
def people(app, db):
    """A superadmin, a helpdesk member and a domain admin of a.example, each signed in."""
    for address in ("root@hq.example", "help@a.example", "dadmin@a.example"):
        make_mailbox(db, address, PASSWORD)
    return grant_and_sign_in(
        app, [("superadmin", "root@hq.example"), ("helpdesk", "help@a.example", "a.example"),
              ("domain-admin", "dadmin@a.example", "a.example")],
        {"root": "root@hq.example", "help": "help@a.example", "dadmin": "dadmin@a.example"}, PASSWORD)


def helpdesk_post(client, address: str, action: str, **data):
    token = csrf_token(client, f"/helpdesk/mailboxes/{address}")
    return client.post(f"/helpdesk/mailboxes/{address}/{action}", data={"csrf_token": token, **data})


def admin_edit(client, address: str, **fields):
    domain = address.partition("@")[2]
    url = f"/admin/domains/{domain}/mailboxes/{address}"
    return client.post(url, data={"csrf_token": csrf_token(client, url), "quota": "", "active": "y", **fields})


def test_helpdesk_disable_ends_the_open_session_and_only_that_one(people, db, mail_stack):
    make_mailbox(db, "user@a.example", PASSWORD)
    make_mailbox(db, "colleague@a.example", PASSWORD)
    user, colleague = open_session(mail_stack, "user@a.example"), open_session(mail_stack, "colleague@a.example")
    assert helpdesk_post(people["help"], "user@a.example", "disable", reason="left").status_code == 302
    assert is_ended(user)
    assert not is_ended(colleague, within=0.5)
    with pytest.raises(LoginError):
        open_session(mail_stack, "user@a.example")


def test_helpdesk_reset_ends_the_open_session(people, db, mail_stack):
    make_mailbox(db, "user@a.example", PASSWORD)
    user = open_session(mail_stack, "user@a.example")
    assert helpdesk_post(people["help"], "user@a.example", "reset").status_code == 200
    assert is_ended(user)


def test_admin_password_and_disable_end_open_sessions(people, db, mail_stack):
    make_mailbox(db, "worker@a.example", PASSWORD)
    phone = open_session(mail_stack, "worker@a.example")
    assert admin_edit(people["dadmin"], "worker@a.example", quota="200 MB").status_code == 302
    assert not is_ended(phone, within=0.5)  # a new limit takes nothing away
    phone = open_session(mail_stack, "worker@a.example")
    assert admin_edit(people["dadmin"], "worker@a.example", new_password=NEW_PASSWORD,
                      confirm_password=NEW_PASSWORD, final="y").status_code == 302
    assert is_ended(phone)
    phone = open_session(mail_stack, "worker@a.example", NEW_PASSWORD)
    assert admin_edit(people["dadmin"], "worker@a.example", active="").status_code == 302
    assert is_ended(phone)


def test_deleting_a_mailbox_ends_its_open_session(people, db, mail_stack):
    make_mailbox(db, "leaver@a.example", PASSWORD)
    phone = open_session(mail_stack, "leaver@a.example")
    url = "/admin/domains/a.example/mailboxes/leaver@a.example/delete"
    response = people["dadmin"].post(url, data={"csrf_token": csrf_token(people["dadmin"], url),
                                                 "confirm": "leaver@a.example"})
    assert response.status_code == 302
    assert is_ended(phone)


def test_disabling_a_domain_ends_its_sessions_in_the_portal_and_in_dovecot(app, people, db, mail_stack):
    make_mailbox(db, "one@a.example", PASSWORD)
    make_mailbox(db, "two@a.example", PASSWORD)
    make_mailbox(db, "elsewhere@b.example", PASSWORD)
    phones = [open_session(mail_stack, a) for a in ("one@a.example", "two@a.example")]
    other = open_session(mail_stack, "elsewhere@b.example")
    browser = make_client(app)
    assert sign_in(browser, "one@a.example", PASSWORD).status_code == 302
    assert app.test_cli_runner().invoke(args=["domain", "disable", "a.example"]).exit_code == 0
    assert all(is_ended(p) for p in phones)
    assert not is_ended(other, within=0.5)
    # Enabling it again does not bring the old cookie back to life.
    assert app.test_cli_runner().invoke(args=["domain", "enable", "a.example"]).exit_code == 0
    response = browser.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/auth/login")


def test_changing_your_own_password_ends_your_mail_clients_sessions(app, db, mail_stack):
    make_mailbox(db, "me@a.example", PASSWORD)
    phone = open_session(mail_stack, "me@a.example")
    browser = make_client(app)
    assert sign_in(browser, "me@a.example", PASSWORD).status_code == 302
    response = browser.post("/account/password", data={
        "csrf_token": csrf_token(browser, "/account/password"), "current_password": PASSWORD,
        "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert response.status_code == 302
    assert is_ended(phone)
    open_session(mail_stack, "me@a.example", NEW_PASSWORD).logout()


def test_an_unreachable_doveadm_leaves_the_change_standing_and_says_so(app_factory, db, mail_stack, caplog):
    app = app_factory(DOVEADM_URL=f"http://127.0.0.1:{free_port()}/doveadm/v1")
    make_mailbox(db, "user@a.example", PASSWORD)
    with caplog.at_level(logging.WARNING, logger="portal.doveadm"):
        assert app.test_cli_runner().invoke(args=DISABLE_USER).exit_code == 0
    assert db.execute("SELECT active FROM virtual_users WHERE email = 'user@a.example'").fetchone()["active"] is False
    assert "open mail sessions of user@a.example not ended: doveadm could not be reached" in caplog.text


def test_a_wrong_key_is_reported_without_the_key(app_factory, db, mail_stack, caplog):
    wrong_key = "w" * 40
    app = app_factory(DOVEADM_API_KEY=wrong_key)
    make_mailbox(db, "user@a.example", PASSWORD)
    with caplog.at_level(logging.INFO, logger="portal.doveadm"):
        assert app.test_cli_runner().invoke(args=DISABLE_USER).exit_code == 0
    assert "doveadm answered HTTP 401" in caplog.text
    assert wrong_key not in caplog.text
    assert stack.stack_secrets()["doveadm_api_key"] not in caplog.text


def test_kicking_nobody_is_not_an_error(app):
    doveadm.kick(app.config, ["nobody@nowhere.example", "*@nowhere.example"])
