"""The portal writes to its users: notices of changes, the recovery address and a forgotten password.

Every message goes through the test stack's Postfix into Dovecot and is read back over IMAP.
"""

from __future__ import annotations

import email
import email.policy
import re
import statistics
import time

import imapclient
import pytest

from portal import mailer
from tests.conftest import NOTICE_FROM
from tests.conftest import PUBLIC_URL
from tests.conftest import csrf_token
from tests.conftest import make_client
from tests.conftest import sign_in
from tests.mail import imap_login
from tests.mail import make_mailbox
from tests.mail import wait_for_maildir_message

pytestmark = pytest.mark.mail_server

PASSWORD = "a long enough test password 8"
NEW_PASSWORD = "quite another passphrase for n 42"
ALICE = "alice@n.example"
CAROL = "carol@elsewhere.example"  # alice's recovery address: a mailbox of another domain of the stack


@pytest.fixture
def people(app, db, mail_stack):
    """alice, her helpdesk bob, her domain admin dora, and carol at another domain."""
    ids = {address: make_mailbox(db, address, PASSWORD)
           for address in (ALICE, "bob@n.example", "dora@n.example", CAROL, "eve@n.example")}
    runner = app.test_cli_runner()
    assert runner.invoke(args=["admin", "grant", "helpdesk", "bob@n.example", "n.example"]).exit_code == 0
    assert runner.invoke(args=["admin", "grant", "domain-admin", "dora@n.example", "n.example"]).exit_code == 0
    return ids


def done(response):
    """Close the response as a WSGI server does once it has sent it: mail queued by the request goes then."""
    response.close()
    return response


def signed_in(app, address: str, language: str = "en", password: str = PASSWORD):
    client = make_client(app)
    client.set_cookie("portal_lang", language)
    assert sign_in(client, address, password).status_code == 302
    return client


def mail_for(mail_stack, address: str, password: str = PASSWORD, *, subject: str | None = None, count: int = 1,
             seconds: float = 20) -> list[email.message.EmailMessage]:
    """The portal's messages in the INBOX of ``address``, read over IMAP once ``count`` of them (with ``subject``
    in the subject, if given) have arrived."""
    deadline = time.monotonic() + seconds
    while True:
        client = imap_login(mail_stack.imap_port, address, password)
        try:
            client.select_folder("INBOX", readonly=True)
            uids = client.search(["FROM", NOTICE_FROM])
            fetched = client.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
        finally:
            client.logout()
        found = [email.message_from_bytes(data[b"BODY[]"], policy=email.policy.default) for data in fetched.values()]
        found = [m for m in found if subject is None or subject in str(m["Subject"])]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def parts(message: email.message.EmailMessage) -> tuple[str, str]:
    """The text and HTML parts of a notice."""
    return (message.get_body(("plain",)).get_content(), message.get_body(("html",)).get_content())


def link_in(message: email.message.EmailMessage) -> str:
    text, _html = parts(message)
    return re.search(r"(https://\S+)", text).group(1)


def local(url: str) -> str:
    """The path and query of a link, for the test client (the link itself names PUBLIC_URL)."""
    assert url.startswith(PUBLIC_URL + "/")
    return url[len(PUBLIC_URL):]


def set_recovery(app, mail_stack, client, address: str = CAROL) -> None:
    """Set and confirm a recovery address through the pages and the link that arrives there."""
    token = csrf_token(client, "/account/recovery")
    assert done(client.post("/account/recovery", data={"csrf_token": token, "address": address})).status_code == 302
    [message] = mail_for(mail_stack, address, subject="Confirm the recovery address")
    page = make_client(app).get(local(link_in(message)))
    assert page.status_code == 200 and "is now the recovery address" in page.get_data(as_text=True)


def change_own_password(client, current: str, new: str):
    token = csrf_token(client, "/account/password")
    return done(client.post("/account/password", data={"csrf_token": token, "current_password": current,
                                                        "new_password": new, "confirm_password": new}))


# --- notices ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("language", "subject", "words"), [
    ("en", f"The password of {ALICE} was changed", "you, signed in to the portal"),
    ("ko", f"{ALICE}의 비밀번호가 바뀌었습니다", "포털에 로그인한 본인"),
])
def test_a_password_change_is_told_to_the_mailbox_in_its_language(app, db, people, mail_stack, language, subject,
                                                                  words):
    client = signed_in(app, ALICE, language)
    assert change_own_password(client, PASSWORD, NEW_PASSWORD).status_code == 302
    [notice] = mail_for(mail_stack, ALICE, NEW_PASSWORD, subject=subject)
    assert str(notice["Subject"]) == subject
    assert notice["From"] == NOTICE_FROM and notice["To"] == ALICE
    assert notice["Auto-Submitted"] == "auto-generated" and notice["Content-Language"] == language
    text, html = parts(notice)
    assert words in text and words in html
    assert "198." in text  # the client address the change came from
    assert f"{PUBLIC_URL}/auth/login" in text and f'href="{PUBLIC_URL}/auth/login"' in html
    assert NEW_PASSWORD not in notice.as_string() and PASSWORD not in notice.as_string()


def test_the_helpdesk_and_an_admin_are_named_by_role_never_by_name(app, db, people, mail_stack):
    set_recovery(app, mail_stack, signed_in(app, ALICE))
    helpdesk = signed_in(app, "bob@n.example")
    token = csrf_token(helpdesk, f"/helpdesk/mailboxes/{ALICE}")
    response = done(helpdesk.post(f"/helpdesk/mailboxes/{ALICE}/reset", data={"csrf_token": token}))
    assert response.status_code == 200
    temporary = re.search(r'<code[^>]*>([^<]+)</code>', response.get_data(as_text=True)).group(1)
    assert temporary
    # Told to the recovery address, since it may lock the user out, and to the mailbox (whose one-time
    # password opens no IMAP session: its maildir is read instead).
    [notice] = mail_for(mail_stack, CAROL, subject="was changed")
    text, _html = parts(notice)
    assert "the helpdesk" in text and "bob" not in text.lower()
    in_mailbox = wait_for_maildir_message(mail_stack.mail_root / "n.example" / "alice",
                                          f"The password of {ALICE} was changed")
    assert in_mailbox["From"] == NOTICE_FROM

    result = app.test_cli_runner().invoke(args=["mailbox", "passwd", ALICE, "--generate"])
    assert result.exit_code == 0, result.output
    notices = mail_for(mail_stack, CAROL, subject="was changed", count=2)
    assert len(notices) == 2
    assert any("an administrator" in parts(n)[0] and "the server itself" in parts(n)[0] for n in notices)


def test_forwarding_set_by_the_user_names_the_new_destinations_to_both_addresses(app, db, people, mail_stack):
    client = signed_in(app, ALICE)
    set_recovery(app, mail_stack, client)
    token = csrf_token(client, "/account/forwarding")
    response = done(client.post("/account/forwarding", data={"csrf_token": token, "keep_copy": "y",
                                                             "destinations": "someone@remote.invalid"}))
    assert response.status_code == 302
    for address in (ALICE, CAROL):
        [notice] = mail_for(mail_stack, address, subject="is now forwarded")
        text, html = parts(notice)
        assert "someone@remote.invalid" in text and "someone@remote.invalid" in html
        assert "A copy stays in your mailbox" in text


def test_a_filter_that_forwards_copies_is_told_too(app, db, people, mail_stack):
    client = signed_in(app, ALICE)
    token = csrf_token(client, "/account/filters")
    data = {"csrf_token": token, "rows-0-field": "from", "rows-0-match": "contains",
            "rows-0-value": "boss", "rows-0-action": "redirect", "rows-0-argument": "copy@remote.invalid"}
    response = done(client.post("/account/filters", data=data))
    assert response.status_code == 302, response.get_data(as_text=True)
    [notice] = mail_for(mail_stack, ALICE, subject="is now forwarded")
    assert "copy@remote.invalid" in parts(notice)[0]


def test_a_mail_server_that_is_away_never_undoes_the_change_and_the_notice_is_sent_later(app_factory, db, people,
                                                                                         mail_stack):
    from tests.conftest import free_port

    away = app_factory(NOTICE_SMTP_PORT=free_port(), NOTICE_SMTP_TIMEOUT=2.0)
    client = signed_in(away, ALICE)
    started = time.monotonic()
    assert change_own_password(client, PASSWORD, NEW_PASSWORD).status_code == 302
    assert time.monotonic() - started < 10
    imap_login(mail_stack.imap_port, ALICE, NEW_PASSWORD).logout()  # the change stands
    row = db.execute("SELECT attempts, last_error, sent_at FROM portal_outbox").fetchone()
    assert row["attempts"] == 1 and row["sent_at"] is None and "ConnectionRefused" in row["last_error"]
    # The superadmin's overview says so; a domain admin's does not (the mail server is not theirs).
    make_mailbox(db, "root@n.example", PASSWORD)
    assert away.test_cli_runner().invoke(args=["admin", "grant", "superadmin", "root@n.example"]).exit_code == 0
    overview = signed_in(away, "root@n.example").get("/admin/").get_data(as_text=True)
    assert re.search(r'figure-count">1</span>\s*<span class="figure-label">notices to users not sent yet', overview)
    assert "not sent yet" not in signed_in(away, "dora@n.example").get("/admin/").get_data(as_text=True)
    db.execute("UPDATE portal_outbox SET next_attempt_at = now()")

    result = app_factory().test_cli_runner().invoke(args=["notices", "send"])
    assert result.exit_code == 0 and "sent 1, failed 0, waiting 0" in result.output
    assert len(mail_for(mail_stack, ALICE, NEW_PASSWORD, subject="was changed")) == 1


def test_header_values_cannot_carry_a_line_break():
    for field in ("recipient", "subject"):
        values = {"sender": NOTICE_FROM, "recipient": ALICE, "subject": "Hello", "text": "x", "html": "<p>x</p>",
                  "language": "en"}
        values[field] = values[field] + "\r\nBcc: victim@remote.invalid"
        with pytest.raises(ValueError):
            mailer.compose(**values)


# --- the recovery address ----------------------------------------------------------------------------


def test_a_recovery_address_counts_only_once_its_link_is_opened_and_only_once(app, db, people, mail_stack):
    client = signed_in(app, ALICE)
    token = csrf_token(client, "/account/recovery")
    done(client.post("/account/recovery", data={"csrf_token": token, "address": CAROL}))
    state = db.execute("SELECT recovery_address, recovery_verified_at FROM portal_mailbox_settings").fetchone()
    assert state["recovery_address"] == CAROL and state["recovery_verified_at"] is None
    [message] = mail_for(mail_stack, CAROL, subject="Confirm the recovery address")
    link = link_in(message)
    assert make_client(app).get(local(link)).status_code == 200
    assert db.execute("SELECT recovery_verified_at FROM portal_mailbox_settings").fetchone()["recovery_verified_at"]
    assert make_client(app).get(local(link)).status_code == 410
    stored = db.execute("SELECT token_sha256 FROM portal_recovery_tokens").fetchall()
    assert stored and all(link.rpartition("=")[2].encode() not in bytes(r["token_sha256"]) for r in stored)
    # The audit rows name the addresses, never a token.
    assert link.rpartition("=")[2] not in str(db.execute("SELECT summary FROM portal_audit_log").fetchall())


@pytest.mark.parametrize("address", [ALICE, "ALICE@n.example", "alias.of.alice@n.example"])
def test_the_recovery_address_must_be_outside_the_mailbox(app, db, people, mail_stack, address):
    db.execute("INSERT INTO virtual_aliases (domain_id, source, destination) SELECT domain_id,"
               " 'alias.of.alice@n.example', %s FROM virtual_users WHERE email = %s", (ALICE, ALICE))
    client = signed_in(app, ALICE)
    token = csrf_token(client, "/account/recovery")
    response = client.post("/account/recovery", data={"csrf_token": token, "address": address})
    assert response.status_code == 400 and "outside this mailbox" in response.get_data(as_text=True)
    assert db.execute("SELECT count(*) AS n FROM portal_mailbox_settings WHERE recovery_address IS NOT NULL"
                      ).fetchone()["n"] == 0


def test_changing_the_recovery_address_is_told_to_the_old_one(app, db, people, mail_stack):
    client = signed_in(app, ALICE)
    set_recovery(app, mail_stack, client)
    token = csrf_token(client, "/account/recovery")
    done(client.post("/account/recovery", data={"csrf_token": token, "address": "eve@n.example"}))
    [notice] = mail_for(mail_stack, CAROL, subject="recovery address of alice@n.example was changed")
    assert "eve@n.example" in parts(notice)[0]
    assert mail_for(mail_stack, ALICE, subject="recovery address of alice@n.example was changed")


# --- forgot password ---------------------------------------------------------------------------------


def forgot(client, address: str, **headers):
    page = client.get("/auth/forgot", headers=headers).get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    return done(client.post("/auth/forgot", data={"csrf_token": token, "address": address}, headers=headers))


def reset_through(app, link: str, password: str):
    browser = make_client(app)
    assert browser.get(local(link)).status_code == 302  # the token leaves the address bar at once
    page = browser.get("/auth/recover")
    if page.status_code != 200:
        return page
    token = csrf_token(browser, "/auth/recover")
    return done(browser.post("/auth/recover", data={"csrf_token": token, "new_password": password,
                                                     "confirm_password": password}))


def test_a_forgotten_password_is_reset_through_the_link_once(app, db, people, mail_stack):
    old_session = signed_in(app, ALICE)
    set_recovery(app, mail_stack, old_session)
    forgot(make_client(app), ALICE)
    [message] = mail_for(mail_stack, CAROL, subject="A new password")
    link = link_in(message)
    response = reset_through(app, link, NEW_PASSWORD)
    assert response.status_code == 302 and response.headers["Location"] == "/auth/login"
    imap_login(mail_stack.imap_port, ALICE, NEW_PASSWORD).logout()
    with pytest.raises(imapclient.exceptions.LoginError):
        imap_login(mail_stack.imap_port, ALICE, PASSWORD)
    assert old_session.get("/").status_code == 302  # every session ended
    # Both are told, the recovery address because a reset could lock the owner out.
    assert mail_for(mail_stack, ALICE, NEW_PASSWORD, subject="was changed")
    [notice] = mail_for(mail_stack, CAROL, subject="was changed")
    assert "recovery link" in parts(notice)[0]
    assert reset_through(app, link, "yet another long passphrase 99").status_code == 410


def test_an_expired_link_is_refused(app, db, people, mail_stack):
    set_recovery(app, mail_stack, signed_in(app, ALICE))
    forgot(make_client(app), ALICE)
    [message] = mail_for(mail_stack, CAROL, subject="A new password")
    expires = db.execute("SELECT expires_at - created_at AS valid FROM portal_recovery_tokens WHERE purpose = 'reset'"
                         ).fetchone()["valid"]
    assert expires.total_seconds() == 30 * 60
    db.execute("UPDATE portal_recovery_tokens SET expires_at = now() - interval '1 second'")
    assert reset_through(app, link_in(message), NEW_PASSWORD).status_code == 410
    imap_login(mail_stack.imap_port, ALICE, PASSWORD).logout()


def test_a_new_password_must_meet_the_policy(app, db, people, mail_stack):
    set_recovery(app, mail_stack, signed_in(app, ALICE))
    forgot(make_client(app), ALICE)
    [message] = mail_for(mail_stack, CAROL, subject="A new password")
    response = reset_through(app, link_in(message), "short")
    assert response.status_code == 400
    imap_login(mail_stack.imap_port, ALICE, PASSWORD).logout()


@pytest.mark.parametrize("headers", [{"Host": "evil.example"}, {"X-Forwarded-Host": "evil.example"},
                                     {"Host": "evil.example", "X-Forwarded-Host": "evil.example",
                                      "X-Forwarded-Proto": "http"}])
def test_the_link_names_the_configured_address_whatever_the_request_says(app, db, people, mail_stack, headers):
    set_recovery(app, mail_stack, signed_in(app, ALICE))
    forgot(make_client(app), ALICE, **headers)
    [message] = mail_for(mail_stack, CAROL, subject="A new password")
    text, html = parts(message)
    assert "evil" not in text and "evil" not in html
    assert link_in(message).startswith(f"{PUBLIC_URL}/auth/recover?token=")


def _answer(response) -> str:
    # The page without what differs by session anyway (the CSRF tokens of the header's switches).
    return re.sub(r'name="csrf_token"[^>]*value="[^"]+"', "", response.get_data(as_text=True))


def test_the_answer_and_its_time_are_the_same_for_every_address(app, db, people, mail_stack):
    set_recovery(app, mail_stack, signed_in(app, ALICE))
    cases = {"with a recovery address": ALICE, "without one": "eve@n.example", "no such mailbox": "nobody@n.example"}
    times = {name: [] for name in cases}
    answers = {}
    for _round in range(4):
        for name, address in cases.items():
            client = make_client(app)
            token = csrf_token(client, "/auth/forgot")
            started = time.perf_counter()
            response = client.post("/auth/forgot", data={"csrf_token": token, "address": address})
            times[name].append(time.perf_counter() - started)
            response.close()
            assert response.status_code == 200
            answers.setdefault(name, _answer(response))
    assert len(set(answers.values())) == 1
    medians = {name: statistics.median(values) for name, values in times.items()}
    assert all(m >= 0.5 for m in medians.values()), medians
    assert max(medians.values()) - min(medians.values()) < 0.05, medians


def test_requests_are_limited_per_account_and_per_client(app, db, people, mail_stack):
    set_recovery(app, mail_stack, signed_in(app, ALICE))
    for _ in range(5):
        assert forgot(make_client(app), ALICE).status_code == 200
    # Three links an hour reach the recovery address, however many are asked for.
    assert len(mail_for(mail_stack, CAROL, subject="A new password", count=3)) == 3
    assert db.execute("SELECT count(*) AS n FROM portal_recovery_tokens WHERE purpose = 'reset'").fetchone()["n"] == 3
    one_client = make_client(app)
    statuses = [forgot(one_client, f"nobody{i}@n.example").status_code for i in range(11)]
    assert statuses == [200] * 10 + [429]


def test_recovery_switched_off_for_the_domain_sends_nothing_and_stops_open_links(app, db, people, mail_stack):
    set_recovery(app, mail_stack, signed_in(app, ALICE))
    forgot(make_client(app), ALICE)
    [message] = mail_for(mail_stack, CAROL, subject="A new password")
    admin = signed_in(app, "dora@n.example")
    token = csrf_token(admin, "/helpdesk/recovery")
    assert admin.post("/helpdesk/recovery/n.example/off", data={"csrf_token": token}).status_code == 302
    assert reset_through(app, link_in(message), NEW_PASSWORD).status_code == 410
    forgot(make_client(app), ALICE)
    time.sleep(2)
    assert len(mail_for(mail_stack, CAROL, subject="A new password", seconds=0)) == 1
    page = signed_in(app, ALICE).get("/account/recovery").get_data(as_text=True)
    assert "switched password recovery off" in page
    audit = db.execute("SELECT actor, actor_role, summary FROM portal_audit_log WHERE action = 'domain.recovery'"
                       ).fetchone()
    assert audit["actor"] == "dora@n.example" and audit["actor_role"] == "domain_admin"
    assert audit["summary"] == {"allowed": False}


def test_the_helpdesk_switches_only_its_own_domains(app, db, people, mail_stack):
    make_mailbox(db, "frank@other.example", PASSWORD)
    helpdesk = signed_in(app, "bob@n.example")
    page = helpdesk.get("/helpdesk/recovery").get_data(as_text=True)
    assert "n.example" in page and "other.example" not in page
    token = csrf_token(helpdesk, "/helpdesk/recovery")
    assert helpdesk.post("/helpdesk/recovery/other.example/off", data={"csrf_token": token}).status_code == 403
    assert helpdesk.post("/helpdesk/recovery/n.example/off", data={"csrf_token": token}).status_code == 302
    rows = {r["name"]: r["allow_password_recovery"]
            for r in db.execute("SELECT name, allow_password_recovery FROM virtual_domains").fetchall()}
    assert rows["other.example"] is True and rows["n.example"] is False
