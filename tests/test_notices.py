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


def save_recovery(client, address: str, password: str = PASSWORD):
    token = csrf_token(client, "/account/recovery")
    return done(client.post("/account/recovery", data={"csrf_token": token, "address": address,
                                                       "current_password": password}))


def confirm(app, link: str):
    """Open a confirmation link and press its button, as its recipient does."""
    browser = make_client(app)
    page = browser.get(local(link))
    if page.status_code != 200:
        return page
    token = re.search(r'name="token" type="hidden" value="([^"]*)"', page.get_data(as_text=True)).group(1)
    return browser.post("/auth/verify-recovery", data={"csrf_token": csrf_token(browser, local(link)),
                                                         "token": token})


def set_recovery(app, mail_stack, client, address: str = CAROL) -> None:
    """Set and confirm a recovery address through the pages and the link that arrives there."""
    assert save_recovery(client, address).status_code == 302
    [message] = mail_for(mail_stack, address, subject="Confirm the recovery address")
    page = confirm(app, link_in(message))
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

    # Postfix away, and no doveadm API: every copy goes through Postfix.
    away = app_factory(NOTICE_SMTP_PORT=free_port(), NOTICE_SMTP_TIMEOUT=2.0, DOVEADM_URL="")
    client = signed_in(away, ALICE)
    started = time.monotonic()
    assert change_own_password(client, PASSWORD, NEW_PASSWORD).status_code == 302
    assert time.monotonic() - started < 2  # the send happens in the background
    imap_login(mail_stack.imap_port, ALICE, NEW_PASSWORD).logout()  # the change stands
    deadline = time.monotonic() + 10
    while not (row := db.execute("SELECT attempts, last_error, sent_at FROM portal_outbox").fetchone())["attempts"]:
        assert time.monotonic() < deadline, "the send was never tried"
        time.sleep(0.1)
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
    # Not without the current password: a session alone does not move where new passwords can be sent.
    refused = save_recovery(client, CAROL, "not the password at all")
    assert refused.status_code == 400 and "current password is not correct" in refused.get_data(as_text=True)
    assert db.execute("SELECT count(*) AS n FROM portal_mailbox_settings WHERE recovery_address IS NOT NULL"
                      ).fetchone()["n"] == 0
    save_recovery(client, CAROL)
    state = db.execute("SELECT recovery_address, recovery_verified_at FROM portal_mailbox_settings").fetchone()
    assert state["recovery_address"] == CAROL and state["recovery_verified_at"] is None
    [message] = mail_for(mail_stack, CAROL, subject="Confirm the recovery address")
    link = link_in(message)
    # Opening the link (as a mail scanner does) confirms nothing; the button does.
    assert make_client(app).get(local(link)).status_code == 200
    assert not db.execute("SELECT recovery_verified_at FROM portal_mailbox_settings").fetchone()[
        "recovery_verified_at"]
    assert confirm(app, link).status_code == 200
    assert db.execute("SELECT recovery_verified_at FROM portal_mailbox_settings").fetchone()["recovery_verified_at"]
    assert confirm(app, link).status_code == 410
    stored = db.execute("SELECT token_sha256 FROM portal_recovery_tokens").fetchall()
    assert stored and all(link.rpartition("=")[2].encode() not in bytes(r["token_sha256"]) for r in stored)
    # The audit rows name the addresses, never a token.
    assert link.rpartition("=")[2] not in str(db.execute("SELECT summary FROM portal_audit_log").fetchall())


@pytest.mark.parametrize("address", [ALICE, "ALICE@n.example", "alias.of.alice@n.example", "alice+tag@n.example",
                                     "chain@n.example", "anything@catchall.example", "alice@n.test",
                                     "team@n.example"])
def test_the_recovery_address_must_be_outside_the_mailbox(app, db, people, mail_stack, address):
    """Any address whose mail lands in the mailbox: itself, an alias, an extension, a chain of aliases, a catch-all,
    an alias domain, a group that keeps copies for others too."""
    make_mailbox(db, "postmaster@catchall.example", PASSWORD)
    runner = app.test_cli_runner()
    for args in (["alias", "add", "alias.of.alice@n.example", ALICE], ["alias", "add", "chain@n.example",
                                                                      "alias.of.alice@n.example"],
                 ["alias", "add", "@catchall.example", ALICE], ["alias-domain", "add", "n.test", "n.example"],
                 ["alias", "add", "team@n.example", "eve@n.example", "alice@n.example"]):
        result = runner.invoke(args=args)
        assert result.exit_code == 0, result.output
    client = signed_in(app, ALICE)
    response = save_recovery(client, address)
    assert response.status_code == 400 and "outside this mailbox" in response.get_data(as_text=True)
    assert db.execute("SELECT count(*) AS n FROM portal_mailbox_settings WHERE recovery_address IS NOT NULL"
                      ).fetchone()["n"] == 0


def test_changing_the_recovery_address_is_told_to_the_old_one(app, db, people, mail_stack):
    client = signed_in(app, ALICE)
    set_recovery(app, mail_stack, client)
    save_recovery(client, "eve@n.example")
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


# --- what the review found ---------------------------------------------------------------------------


def test_neither_forwarding_nor_a_filter_keeps_a_notice_from_the_mailbox(app, db, people, mail_stack):
    """Whoever changes the forwarding (no copy kept) or adds a filter that deletes the portal's mail cannot hide the
    notice of it: the mailbox's copy is saved straight into its INBOX, past aliases and filters."""
    client = signed_in(app, ALICE)
    token = csrf_token(client, "/account/filters")
    done(client.post("/account/filters", data={
        "csrf_token": token, "rows-0-field": "from", "rows-0-match": "contains", "rows-0-value": NOTICE_FROM,
        "rows-0-action": "discard", "rows-0-argument": ""}))
    token = csrf_token(client, "/account/forwarding")
    assert done(client.post("/account/forwarding", data={"csrf_token": token,
                                                         "destinations": "eve@n.example"})).status_code == 302
    [notice] = mail_for(mail_stack, ALICE, subject="is now forwarded")
    assert "No copy stays in your mailbox" in parts(notice)[0]
    assert mail_for(mail_stack, "eve@n.example", subject="is now forwarded", seconds=2) == []


def test_a_mailbox_with_a_role_cannot_use_recovery(app, db, people, mail_stack):
    client = signed_in(app, "bob@n.example")  # the helpdesk
    response = save_recovery(client, CAROL)
    assert response.status_code == 400 and "cannot use password recovery" in response.get_data(as_text=True)
    # A role given after the address was confirmed stops its links too.
    set_recovery(app, mail_stack, signed_in(app, ALICE))
    assert app.test_cli_runner().invoke(args=["admin", "grant", "helpdesk", ALICE, "n.example"]).exit_code == 0
    forgot(make_client(app), ALICE)
    time.sleep(2)
    assert mail_for(mail_stack, CAROL, subject="A new password", seconds=0) == []


def test_confirmation_links_are_limited_per_day(app, db, people, mail_stack):
    client = signed_in(app, ALICE)
    for _ in range(3):
        assert save_recovery(client, CAROL).status_code == 302
    response = save_recovery(client, CAROL)
    assert response.status_code == 400 and "Too many confirmation links" in response.get_data(as_text=True)
    assert len(mail_for(mail_stack, CAROL, subject="Confirm the recovery address", count=3)) == 3


def test_a_password_changed_another_way_makes_open_reset_links_worthless(app, db, people, mail_stack):
    set_recovery(app, mail_stack, signed_in(app, ALICE))
    forgot(make_client(app), ALICE)
    [message] = mail_for(mail_stack, CAROL, subject="A new password")
    assert change_own_password(signed_in(app, ALICE), PASSWORD, NEW_PASSWORD).status_code == 302
    assert reset_through(app, link_in(message), "yet another long passphrase 99").status_code == 410
    imap_login(mail_stack.imap_port, ALICE, NEW_PASSWORD).logout()


def test_an_alias_made_later_that_brings_the_recovery_address_home_stops_the_links(app, db, people, mail_stack):
    set_recovery(app, mail_stack, signed_in(app, ALICE), address="eve@n.example")
    # eve's mail now goes to alice too: a link to eve would land in alice's own mailbox.
    db.execute("INSERT INTO virtual_aliases (domain_id, source, destination) SELECT domain_id, 'eve@n.example', d"
               " FROM virtual_users, (VALUES ('eve@n.example'), (%s)) AS v(d) WHERE email = 'eve@n.example'",
               (ALICE,))
    forgot(make_client(app), ALICE)
    time.sleep(2)
    assert mail_for(mail_stack, "eve@n.example", subject="A new password", seconds=0) == []


def test_a_new_api_token_is_told_to_its_holder_without_its_secret(app, db, people, mail_stack):
    admin = signed_in(app, "dora@n.example")
    response = done(admin.post("/account/api-tokens", data={
        "csrf_token": csrf_token(admin, "/account/api-tokens"), "name": "nightly <sync>", "domains": "n.example\n"}))
    assert response.status_code == 201
    secret = re.search(r'<code class="secret" id="new-token">([^<]+)</code>', response.get_data(as_text=True)).group(1)
    [notice] = mail_for(mail_stack, "dora@n.example", subject="A new API token")
    text, html = parts(notice)
    assert "nightly <sync>" in text and "nightly &lt;sync&gt;" in html and "<sync>" not in html
    assert secret not in notice.as_string() and secret.split("_", 2)[2] not in notice.as_string()


def test_the_helpdesk_removes_a_recovery_address_and_both_are_told(app, db, people, mail_stack):
    set_recovery(app, mail_stack, signed_in(app, ALICE))
    helpdesk = signed_in(app, "bob@n.example")
    page = helpdesk.get(f"/helpdesk/mailboxes/{ALICE}").get_data(as_text=True)
    assert CAROL in page and "confirmed on" in page
    # The helpdesk of another domain may not.
    make_mailbox(db, "otto@other.example", PASSWORD)
    assert app.test_cli_runner().invoke(args=["admin", "grant", "helpdesk", "otto@other.example", "other.example"]
                                        ).exit_code == 0
    outsider = signed_in(app, "otto@other.example")
    token = csrf_token(outsider, "/helpdesk/")
    assert outsider.post(f"/helpdesk/mailboxes/{ALICE}/recovery/remove", data={"csrf_token": token}
                         ).status_code == 403
    token = csrf_token(helpdesk, f"/helpdesk/mailboxes/{ALICE}")
    response = done(helpdesk.post(f"/helpdesk/mailboxes/{ALICE}/recovery/remove", data={"csrf_token": token}))
    assert response.status_code == 302
    assert db.execute("SELECT recovery_address FROM portal_mailbox_settings").fetchone()["recovery_address"] is None
    for address, before in ((ALICE, 1), (CAROL, 0)):  # alice was told when she set it, too
        found = mail_for(mail_stack, address, subject="recovery address of alice@n.example was changed",
                         count=before + 1)
        [notice] = [n for n in found if "was removed" in parts(n)[0]]
        assert "the helpdesk" in parts(notice)[0]
    audit = db.execute("SELECT actor, actor_role FROM portal_audit_log WHERE action = 'recovery.update'"
                       " ORDER BY id DESC LIMIT 1").fetchone()
    assert audit["actor"] == "bob@n.example" and audit["actor_role"] == "helpdesk"
    forgot(make_client(app), ALICE)
    time.sleep(2)
    assert mail_for(mail_stack, CAROL, subject="A new password", seconds=0) == []
