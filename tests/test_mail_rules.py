"""Out-of-office replies and filters, proven by real mail: Postfix delivers, Dovecot's Sieve runs the portal's
script, and replies come back through Postfix into the sender's maildir."""

from __future__ import annotations

import email
import email.policy
import re
import time
from datetime import date
from datetime import timedelta

import pytest

from portal import doveadm
from portal import sieve
from portal.access import Actor
from portal.rules import mail_rules
from tests.conftest import new_client_ip
from tests.mail import ManageSieve
from tests.mail import imap_login
from tests.mail import make_mailbox
from tests.mail import send_mail
from tests.mail import wait_for_maildir_message

pytestmark = pytest.mark.mail_server

PASSWORD = "a long enough test password 7"
TODAY = date.today()


@pytest.fixture
def people(app, db, mail_stack):
    """alice and bob in r.example, a helpdesk member of r.example, and their ids."""
    ids = {name: make_mailbox(db, f"{name}@r.example", PASSWORD) for name in ("alice", "bob", "help", "carol")}
    db.execute("INSERT INTO virtual_aliases (domain_id, source, destination) SELECT domain_id, 'info@r.example',"
               " 'alice@r.example' FROM virtual_users WHERE email = 'alice@r.example'")
    assert app.test_cli_runner().invoke(args=["admin", "grant", "helpdesk", "help@r.example", "r.example"]
                                        ).exit_code == 0
    return ids


def actor(people, name: str) -> Actor:
    return Actor(f"{name}@r.example", "192.0.2.7", people[name])


def maildir(mail_stack, name: str, folder: str = ""):
    return mail_stack.mail_root / "r.example" / name / folder


def messages_in(path) -> list[email.message.Message]:
    found = []
    for sub in ("new", "cur"):
        if (path / sub).is_dir():
            found += [email.message_from_bytes(p.read_bytes()) for p in (path / sub).iterdir()]
    return found


def replies_to_bob(mail_stack) -> list[email.message.Message]:
    return [m for m in messages_in(maildir(mail_stack, "bob")) if m["Auto-Submitted"]]


def text_of(message: email.message.Message) -> str:
    part = next(p for p in message.walk() if p.get_content_type() == "text/plain")
    return part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")


def wait_for_decoded(path, subject: str, seconds: float = 15, replies: bool = False) -> email.message.EmailMessage:
    """The message in the maildir at ``path`` whose decoded subject is ``subject`` (an auto-reply if asked)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for sub in ("new", "cur"):
            folder = path / sub
            for found in folder.iterdir() if folder.is_dir() else ():
                message = email.message_from_bytes(found.read_bytes(), policy=email.policy.default)
                # Pigeonhole folds a long encoded subject at a space and writes the fold as a tab: a subject
                # cannot hold a tab (text_problem refuses it), so a tab here is that fold.
                if str(message["Subject"]).replace("\t", " ") == subject and (message["Auto-Submitted"]
                                                                              or not replies):
                    return message
        time.sleep(0.1)
    raise AssertionError(f"no message {subject!r} in {path} after {seconds} s")


def wait_for_reply(mail_stack, subject: str) -> email.message.EmailMessage:
    """The auto-reply in bob's maildir whose decoded subject is ``subject``."""
    return wait_for_decoded(maildir(mail_stack, "bob"), subject, replies=True)


def vacation(subject="Away", body="Back on Monday.", first=None, last=None, days=7, addresses=()):
    return sieve.Vacation(True, subject, body, first, last, days, tuple(addresses))


def settle(seconds: float = 2.0) -> None:
    """Give Postfix and Sieve time to send what they would send (used only to prove that nothing came)."""
    time.sleep(seconds)


@pytest.mark.parametrize(("subject", "body"), [
    ("Out of office", "I am away until Monday.\nFor urgent matters write to info@r.example."),
    ("부재 중입니다", "월요일에 돌아옵니다.\n급한 일은 info@r.example 로 보내 주세요."),
])
def test_bob_gets_exactly_one_reply_with_alices_words(app, db, people, mail_stack, subject, body):
    with app.app_context():
        mail_rules.save_vacation(db, actor(people, "alice"), vacation(subject, body), config=app.config, today=TODAY)
    send_mail(mail_stack.smtp_port, "alice@r.example", "first", sender="bob@r.example")
    reply = wait_for_reply(mail_stack, subject)
    send_mail(mail_stack.smtp_port, "alice@r.example", "second", sender="bob@r.example")
    wait_for_maildir_message(maildir(mail_stack, "alice"), "second")
    settle()
    assert len(replies_to_bob(mail_stack)) == 1
    assert text_of(reply).replace("\r\n", "\n").strip() == body
    assert reply["To"].strip("<>") == "bob@r.example"
    assert "alice@r.example" in reply["From"]
    # Both messages reached alice: the reply is sent besides delivery, never instead.
    assert {m["Subject"] for m in messages_in(maildir(mail_stack, "alice"))} == {"first", "second"}


def test_an_alias_of_alice_is_answered_too(app, db, people, mail_stack):
    with app.app_context():
        mail_rules.save_vacation(db, actor(people, "alice"), vacation("Away via info"), config=app.config,
                                 today=TODAY)
    send_mail(mail_stack.smtp_port, "info@r.example", "to the alias", sender="bob@r.example")
    wait_for_reply(mail_stack, "Away via info")


@pytest.mark.parametrize("header", [("List-Id", "<dev.lists.example>"), ("Precedence", "bulk"),
                                    ("Auto-Submitted", "auto-generated")])
def test_lists_bulk_and_automatic_mail_get_no_reply(app, db, people, mail_stack, header):
    with app.app_context():
        mail_rules.save_vacation(db, actor(people, "alice"), vacation(), config=app.config, today=TODAY)
    send_mail(mail_stack.smtp_port, "alice@r.example", "list mail", sender="bob@r.example",
              headers={header[0]: header[1]})
    wait_for_maildir_message(maildir(mail_stack, "alice"), "list mail")
    settle()
    assert replies_to_bob(mail_stack) == []


def test_no_reply_after_the_last_day_and_none_before_the_first(app, db, people, mail_stack):
    # Saved as if it were long ago: the script still says "until 2020-01-02", and today is past it.
    with app.app_context():
        mail_rules.save_vacation(db, actor(people, "alice"), vacation(last=date(2020, 1, 2)), config=app.config,
                                 today=date(2020, 1, 1))
    send_mail(mail_stack.smtp_port, "alice@r.example", "after the end", sender="bob@r.example")
    with app.app_context():
        mail_rules.save_vacation(db, actor(people, "carol"), vacation(first=TODAY + timedelta(days=3)),
                                 config=app.config, today=TODAY)
    send_mail(mail_stack.smtp_port, "carol@r.example", "before the start", sender="bob@r.example")
    wait_for_maildir_message(maildir(mail_stack, "alice"), "after the end")
    wait_for_maildir_message(maildir(mail_stack, "carol"), "before the start")
    settle()
    assert replies_to_bob(mail_stack) == []


def test_a_filter_files_a_senders_mail_into_a_new_folder(app, db, people, mail_stack):
    with app.app_context():
        mail_rules.save_filters(db, actor(people, "alice"), [
            {"field": "from", "match": "is", "value": "bob@r.example", "action": "fileinto", "argument": "Bob 밥"},
            {"field": "subject", "match": "contains", "value": "read me", "action": "seen", "argument": ""},
        ], config=app.config, max_destinations=10, delimiter="+")
    send_mail(mail_stack.smtp_port, "alice@r.example", "from bob, read me", sender="bob@r.example")
    send_mail(mail_stack.smtp_port, "alice@r.example", "from someone else", sender="dave@remote.invalid")
    wait_for_maildir_message(maildir(mail_stack, "alice"), "from someone else")
    client = imap_login(mail_stack.imap_port, "alice@r.example", PASSWORD, client_ip=new_client_ip())
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not client.folder_exists("Bob 밥"):
            time.sleep(0.1)
        client.select_folder("Bob 밥", readonly=True)
        fetched = client.fetch(client.search("ALL"), ["FLAGS", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
        filed = [(email.message_from_bytes(d[b"BODY[HEADER.FIELDS (SUBJECT)]"])["Subject"], d[b"FLAGS"])
                 for d in fetched.values()]
        assert [subject for subject, _flags in filed] == ["from bob, read me"]
        assert b"\\Seen" in filed[0][1]
        client.select_folder("INBOX", readonly=True)
        inbox = client.fetch(client.search("ALL"), ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
        assert [email.message_from_bytes(d[b"BODY[HEADER.FIELDS (SUBJECT)]"])["Subject"]
                for d in inbox.values()] == ["from someone else"]
    finally:
        client.logout()


def test_a_filter_forwards_a_copy_and_keeps_the_message(app, db, people, mail_stack):
    with app.app_context():
        mail_rules.save_filters(db, actor(people, "alice"), [
            {"field": "subject", "match": "contains", "value": "invoice", "action": "redirect",
             "argument": "Carol@R.example"}], config=app.config, max_destinations=10, delimiter="+")
    send_mail(mail_stack.smtp_port, "alice@r.example", "invoice 42", sender="dave@remote.invalid")
    copy = wait_for_maildir_message(maildir(mail_stack, "carol"), "invoice 42")
    wait_for_maildir_message(maildir(mail_stack, "alice"), "invoice 42")
    # The copy went out from alice's address, not the original sender's (SPF holds, bounces reach alice).
    assert copy["Return-Path"] == "<alice@r.example>"


HOSTILE = [
    'quote " and backslash \\ and "; discard; keep; "',
    "${hex:41} ${unicode:1F600} ${variable} \\\" \\\\",
    "}} stop; if true { discard; } {{",
    "한국어 \u200b zero width and emoji \U0001F600",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_arrives_exactly_as_typed(app, db, people, mail_stack, text):
    body = f"{text}\n{text}\n.\n..\nend"
    with app.app_context():
        mail_rules.save_vacation(db, actor(people, "alice"), vacation(subject=text, body=body), config=app.config,
                                 today=TODAY)
        mail_rules.save_filters(db, actor(people, "alice"), [
            {"field": "subject", "match": "is", "value": text, "action": "fileinto", "argument": "Odd"}],
            config=app.config, max_destinations=10, delimiter="+")
    send_mail(mail_stack.smtp_port, "alice@r.example", text, sender="bob@r.example")
    reply = wait_for_reply(mail_stack, text)
    assert text_of(reply).replace("\r\n", "\n").rstrip("\n") == body
    # The filter matched the literal text and did nothing else: filed, not discarded, nothing more.
    filed = wait_for_decoded(maildir(mail_stack, "alice", ".Odd"), text)
    assert filed["Subject"] == text
    send_mail(mail_stack.smtp_port, "alice@r.example", "plain", sender="dave@remote.invalid")
    wait_for_maildir_message(maildir(mail_stack, "alice"), "plain")


@pytest.mark.parametrize("bad", ["line\r\nbreak", "line\nbreak", "nul\x00", "bell\x07", "\ufffd bytes",
                                 "x" * 201])
def test_hostile_text_that_cannot_be_typed_is_refused_and_nothing_changes(app, db, people, mail_stack, bad):
    with app.app_context():
        mail_rules.save_vacation(db, actor(people, "alice"), vacation("Before"), config=app.config, today=TODAY)
        before = doveadm.sieve_script(app.config, "alice@r.example", sieve.SCRIPT_NAME)
        with pytest.raises(mail_rules.MailRulesRefused):
            mail_rules.save_vacation(db, actor(people, "alice"), vacation(subject=bad), config=app.config,
                                     today=TODAY)
        with pytest.raises(mail_rules.MailRulesRefused):
            mail_rules.save_filters(db, actor(people, "alice"), [
                {"field": "from", "match": "contains", "value": bad, "action": "discard", "argument": ""}],
                config=app.config, max_destinations=10, delimiter="+")
        with pytest.raises(mail_rules.MailRulesRefused):
            mail_rules.save_filters(db, actor(people, "alice"), [
                {"field": "from", "match": "contains", "value": "x", "action": "fileinto", "argument": bad}],
                config=app.config, max_destinations=10, delimiter="+")
        assert doveadm.sieve_script(app.config, "alice@r.example", sieve.SCRIPT_NAME) == before
    assert db.execute("SELECT subject FROM portal_vacations").fetchone()["subject"] == "Before"
    assert db.execute("SELECT count(*) AS n FROM portal_mail_filters").fetchone()["n"] == 0


def test_a_script_that_does_not_compile_is_refused_with_the_compilers_message(app, db, people, mail_stack,
                                                                             monkeypatch):
    with app.app_context():
        mail_rules.save_vacation(db, actor(people, "alice"), vacation("Kept"), config=app.config, today=TODAY)
        before = doveadm.sieve_script(app.config, "alice@r.example", sieve.SCRIPT_NAME)
        monkeypatch.setattr(sieve, "render", lambda rules: 'require "vacation";\nvacation "x"\nkeep;\n')
        with pytest.raises(mail_rules.MailRulesRefused) as refused:
            mail_rules.save_vacation(db, actor(people, "alice"), vacation("Changed"), config=app.config,
                                     today=TODAY)
        assert "line 2: missing semicolon" in refused.value.problems[0]
        # Without the portal's compiler, Dovecot's own check refuses it too: never installed.
        monkeypatch.setattr(sieve, "compile_problem", lambda script: None)
        with pytest.raises(mail_rules.MailRulesRefused):
            mail_rules.save_vacation(db, actor(people, "alice"), vacation("Changed"), config=app.config,
                                     today=TODAY)
        assert doveadm.sieve_script(app.config, "alice@r.example", sieve.SCRIPT_NAME) == before
    assert db.execute("SELECT subject FROM portal_vacations").fetchone()["subject"] == "Kept"


OTHER_CLIENT = ('require ["fileinto", "mailbox"];\n'
                'if header :contains "subject" "[carol]" { fileinto :create "FromRoundcube"; }\n')


def test_a_managesieve_script_is_never_replaced_silently_and_survives_a_save(app, db, people, mail_stack):
    other = ManageSieve(mail_stack.managesieve_port, "alice@r.example", PASSWORD)
    try:
        other.put("roundcube", OTHER_CLIENT)
        with app.app_context():
            with pytest.raises(mail_rules.OtherScriptActive) as asked:
                mail_rules.save_vacation(db, actor(people, "alice"), vacation("Away (kept both)"),
                                         config=app.config, today=TODAY)
            assert asked.value.name == "roundcube" and asked.value.text == OTHER_CLIENT
            assert db.execute("SELECT count(*) AS n FROM portal_vacations").fetchone()["n"] == 0
            mail_rules.save_vacation(db, actor(people, "alice"), vacation("Away (kept both)"), config=app.config,
                                     today=TODAY, choice=mail_rules.KEEP)
        assert other.get("roundcube") == OTHER_CLIENT
        assert other.scripts() == {"roundcube": False, sieve.SCRIPT_NAME: True}
    finally:
        other.close()
    # Both run: the portal's reply, and the other client's filter.
    send_mail(mail_stack.smtp_port, "alice@r.example", "[carol] hello", sender="bob@r.example")
    wait_for_reply(mail_stack, "Away (kept both)")
    wait_for_maildir_message(maildir(mail_stack, "alice", ".FromRoundcube"), "[carol] hello")
    # Switching the reply off gives the other client's script back its place.
    with app.app_context():
        mail_rules.save_vacation(db, actor(people, "alice"), sieve.Vacation(False, "", "", None, None, 7, ()),
                                 config=app.config, today=TODAY)
        assert doveadm.sieve_scripts(app.config, "alice@r.example") == [
            {"name": sieve.SCRIPT_NAME, "active": False}, {"name": "roundcube", "active": True}]


def test_replacing_the_other_script_keeps_it_stored_but_inactive(app, db, people, mail_stack):
    other = ManageSieve(mail_stack.managesieve_port, "alice@r.example", PASSWORD)
    try:
        other.put("roundcube", OTHER_CLIENT)
    finally:
        other.close()
    with app.app_context():
        mail_rules.save_filters(db, actor(people, "alice"), [
            {"field": "subject", "match": "contains", "value": "[carol]", "action": "fileinto", "argument": "Mine"}],
            config=app.config, max_destinations=10, delimiter="+", choice=mail_rules.REPLACE)
        assert doveadm.sieve_scripts(app.config, "alice@r.example") == [
            {"name": sieve.SCRIPT_NAME, "active": True}, {"name": "roundcube", "active": False}]
    send_mail(mail_stack.smtp_port, "alice@r.example", "[carol] again", sender="bob@r.example")
    wait_for_maildir_message(maildir(mail_stack, "alice", ".Mine"), "[carol] again")


def test_the_helpdesk_switches_on_a_reply_for_someone_on_sick_leave(app, db, people, mail_stack):
    target = {"id": people["alice"], "email": "alice@r.example"}
    with app.app_context():
        mail_rules.save_vacation_of(db, actor(people, "help"), target, vacation("Alice is on leave"),
                                    config=app.config, today=TODAY)
        # Not one's own mailbox by this route, and nobody outside the helpdesk's reach.
        with pytest.raises(mail_rules.MailRulesRefused):
            mail_rules.save_vacation_of(db, actor(people, "help"), {"id": people["help"], "email": "help@r.example"},
                                        vacation(), config=app.config, today=TODAY)
        with pytest.raises(mail_rules.MailRulesRefused):
            mail_rules.save_vacation_of(db, actor(people, "bob"), target, vacation("Bob says"), config=app.config,
                                        today=TODAY)
    row = db.execute("SELECT actor, actor_role, action, summary FROM portal_audit_log"
                     " WHERE action = 'vacation.update'").fetchall()
    assert [(r["actor"], r["actor_role"]) for r in row] == [("help@r.example", "helpdesk")]
    assert db.execute("SELECT set_by_role FROM portal_vacations").fetchone()["set_by_role"] == "helpdesk"
    send_mail(mail_stack.smtp_port, "alice@r.example", "are you there", sender="bob@r.example")
    wait_for_reply(mail_stack, "Alice is on leave")


def test_a_deleted_mailbox_takes_its_rules_with_it(app, db, people, mail_stack):
    with app.app_context():
        mail_rules.save_vacation(db, actor(people, "alice"), vacation(), config=app.config, today=TODAY)
    result = app.test_cli_runner().invoke(args=["mailbox", "delete", "alice@r.example", "--yes"])
    assert result.exit_code == 0, result.output
    assert db.execute("SELECT count(*) AS n FROM portal_vacations").fetchone()["n"] == 0
    assert db.execute("SELECT count(*) AS n FROM portal_sieve_state").fetchone()["n"] == 0


# The pages: what a user, and a helpdesk member, click.

def signed_in(app, address: str, lang: str = "en"):
    from tests.conftest import make_client
    from tests.conftest import sign_in

    client = make_client(app)
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = lang
    assert sign_in(client, address, PASSWORD).status_code == 302
    return client


@pytest.mark.parametrize(("lang", "subject", "saved"), [("en", "Away this week", "Your out-of-office reply is on."),
                                                        ("ko", "이번 주 부재중", "부재중 자동 응답이 켜졌습니다.")])
def test_the_vacation_page_switches_the_reply_on_and_says_so(app, db, people, mail_stack, lang, subject, saved):
    from tests.conftest import csrf_token

    client = signed_in(app, "alice@r.example", lang)
    token = csrf_token(client, "/account/vacation")
    last = (TODAY + timedelta(days=5)).isoformat()
    response = client.post("/account/vacation", data={
        "csrf_token": token, "enabled": "y", "subject": subject, "body": "Back soon.\r\n곧 돌아옵니다.",
        "first_day": "", "last_day": last, "interval_days": "3",
        "addresses": ["alice@r.example", "info@r.example"]}, follow_redirects=True)
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and saved in page and last in page
    send_mail(mail_stack.smtp_port, "alice@r.example", "hello", sender="bob@r.example")
    reply = wait_for_reply(mail_stack, subject)
    assert text_of(reply).replace("\r\n", "\n").strip() == "Back soon.\n곧 돌아옵니다."
    assert "Out of office" in client.get("/").get_data(as_text=True) or lang == "ko"


def test_the_vacation_page_refuses_bad_input_in_words_and_changes_nothing(app, db, people, mail_stack):
    from tests.conftest import csrf_token

    client = signed_in(app, "alice@r.example")
    token = csrf_token(client, "/account/vacation")
    for data, words in (({"subject": "", "body": "x"}, "Write a subject for the reply."),
                        ({"subject": "x", "body": "x", "last_day": "2020-01-01"}, "The last day has passed already."),
                        ({"subject": "x", "body": "x", "interval_days": "99"}, "Give 1 to 30 days."),
                        ({"subject": "x", "body": "x", "addresses": ["bob@r.example"]},
                         "bob@r.example does not deliver to this mailbox."),
                        ({"subject": "a\u0007b", "body": "x"}, "must be one line")):
        form = {"csrf_token": token, "enabled": "y", "interval_days": "7", "addresses": ["alice@r.example"],
                **data}
        response = client.post("/account/vacation", data=form)
        assert response.status_code == 400, data
        assert words in response.get_data(as_text=True), data
    # Bytes that are not UTF-8 (a form posted in another encoding): refused, not stored as replacement marks.
    # (In a URL-encoded form Werkzeug keeps such an escape as the literal text "%E9", which is then stored
    # and sent exactly as typed.)
    fields = {"csrf_token": token.encode(), "enabled": b"y", "subject": b"caf\xe9", "body": b"ok",
              "interval_days": b"7", "addresses": b"alice@r.example"}
    raw = b"".join(b'--XX\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (name.encode(), value)
                   for name, value in fields.items()) + b"--XX--\r\n"
    response = client.post("/account/vacation", data=raw, content_type="multipart/form-data; boundary=XX")
    assert response.status_code == 400
    assert "The subject holds characters that are not valid text." in response.get_data(as_text=True)
    assert client.post("/account/vacation", data={"enabled": "y", "subject": "x", "body": "x"}).status_code == 400
    assert db.execute("SELECT count(*) AS n FROM portal_vacations").fetchone()["n"] == 0
    with app.app_context():
        assert doveadm.sieve_scripts(app.config, "alice@r.example") == []


def test_the_filters_page_saves_in_order_and_shows_them_in_words(app, db, people, mail_stack):
    from tests.conftest import csrf_token

    client = signed_in(app, "alice@r.example")
    token = csrf_token(client, "/account/filters")
    response = client.post("/account/filters", data={
        "csrf_token": token,
        "rows-0-field": "from", "rows-0-match": "contains", "rows-0-value": "bob", "rows-0-action": "fileinto",
        "rows-0-argument": "Bob",
        "rows-1-field": "list-id", "rows-1-match": "contains", "rows-1-value": "", "rows-1-action": "discard",
        "rows-1-argument": "",
        "rows-2-field": "subject", "rows-2-match": "is", "rows-2-value": "spam", "rows-2-action": "discard",
        "rows-2-argument": ""}, follow_redirects=True)
    page = response.get_data(as_text=True)
    assert response.status_code == 200, page
    assert "When From contains “bob”: move it to the folder “Bob”." in page
    assert "When Subject is “spam”: delete it." in page
    assert [r["value"] for r in db.execute("SELECT value FROM portal_mail_filters ORDER BY position")] == [
        "bob", "spam"]
    send_mail(mail_stack.smtp_port, "alice@r.example", "spam", sender="dave@remote.invalid")
    send_mail(mail_stack.smtp_port, "alice@r.example", "hi from bob", sender="bob@r.example")
    wait_for_maildir_message(maildir(mail_stack, "alice", ".Bob"), "hi from bob")
    settle(1)
    assert "spam" not in {m["Subject"] for m in messages_in(maildir(mail_stack, "alice"))}
    # Forwarding a copy goes by the forwarding page's rules: not to oneself.
    response = client.post("/account/filters", data={
        "csrf_token": token, "rows-0-field": "from", "rows-0-match": "contains", "rows-0-value": "x",
        "rows-0-action": "redirect", "rows-0-argument": "alice@r.example"})
    assert response.status_code == 400 and "Your own address is not a forwarding destination" in \
        response.get_data(as_text=True)


def test_the_page_shows_another_programs_script_and_asks_before_keeping_it(app, db, people, mail_stack):
    from tests.conftest import csrf_token

    other = ManageSieve(mail_stack.managesieve_port, "alice@r.example", PASSWORD)
    try:
        other.put("thunderbird", OTHER_CLIENT)
    finally:
        other.close()
    client = signed_in(app, "alice@r.example")
    assert "thunderbird" in client.get("/account/filters").get_data(as_text=True)
    token = csrf_token(client, "/account/filters")
    data = {"csrf_token": token, "rows-0-field": "subject", "rows-0-match": "contains", "rows-0-value": "x",
            "rows-0-action": "seen", "rows-0-argument": ""}
    response = client.post("/account/filters", data=data)
    page = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "FromRoundcube" in page and 'name="choice"' in page
    assert db.execute("SELECT count(*) AS n FROM portal_mail_filters").fetchone()["n"] == 0
    assert client.post("/account/filters", data={**data, "choice": "keep"}).status_code == 302
    with app.app_context():
        assert doveadm.sieve_script(app.config, "alice@r.example", "thunderbird") == OTHER_CLIENT


def test_the_helpdesk_page_sets_the_reply_and_the_user_is_told(app, db, people, mail_stack):
    from tests.conftest import csrf_token

    helper = signed_in(app, "help@r.example")
    token = csrf_token(helper, "/helpdesk/mailboxes/alice@r.example/vacation")
    response = helper.post("/helpdesk/mailboxes/alice@r.example/vacation", data={
        "csrf_token": token, "enabled": "y", "subject": "On leave", "body": "Alice is on leave.",
        "interval_days": "7", "addresses": ["alice@r.example"]})
    assert response.status_code == 302
    assert helper.post("/helpdesk/mailboxes/help@r.example/vacation", data={
        "csrf_token": token, "enabled": "y", "subject": "x", "body": "x", "interval_days": "7"}).status_code == 403
    user = signed_in(app, "alice@r.example")
    assert "An administrator changed this reply for you" in user.get("/account/vacation").get_data(as_text=True)
    assert "An administrator changed this reply for you" in user.get("/").get_data(as_text=True)
    send_mail(mail_stack.smtp_port, "alice@r.example", "hello?", sender="bob@r.example")
    wait_for_reply(mail_stack, "On leave")


def test_dovecot_away_gives_a_clear_503_and_nothing_changes(app_factory, db, people, mail_stack):
    from tests.conftest import csrf_token
    from tests.conftest import free_port

    app = app_factory(DOVEADM_URL=f"http://127.0.0.1:{free_port()}/doveadm/v1", DOVEADM_TIMEOUT=2.0)
    client = signed_in(app, "alice@r.example")
    token = csrf_token(client, "/account/vacation")
    started = time.monotonic()
    response = client.post("/account/vacation", data={
        "csrf_token": token, "enabled": "y", "subject": "x", "body": "x", "interval_days": "7",
        "addresses": ["alice@r.example"]})
    assert response.status_code == 503 and time.monotonic() - started < 5
    assert "Nothing was changed" in response.get_data(as_text=True)
    assert db.execute("SELECT count(*) AS n FROM portal_vacations").fetchone()["n"] == 0


def test_the_command_line_switches_a_reply_on_and_off(app, db, people, mail_stack):
    runner = app.test_cli_runner()
    last = (TODAY + timedelta(days=2)).isoformat()
    result = runner.invoke(args=["mailbox", "vacation", "alice@r.example", "--subject", "CLI away",
                                 "--message", "-", "--last-day", last], input="Back soon.\n한국어도.\n")
    assert result.exit_code == 0, result.output
    send_mail(mail_stack.smtp_port, "alice@r.example", "cli test", sender="bob@r.example")
    assert text_of(wait_for_reply(mail_stack, "CLI away")).replace("\r\n", "\n").strip() == "Back soon.\n한국어도."
    assert db.execute("SELECT actor_role FROM portal_audit_log WHERE action = 'vacation.update'"
                      ).fetchone()["actor_role"] == "cli"
    refused = runner.invoke(args=["mailbox", "vacation", "alice@r.example", "--last-day", "2020-01-01"])
    assert refused.exit_code == 1 and "The last day has passed already." in refused.output
    assert runner.invoke(args=["mailbox", "vacation", "alice@r.example", "--off"]).exit_code == 0
    with app.app_context():
        assert doveadm.sieve_scripts(app.config, "alice@r.example") == [{"name": sieve.SCRIPT_NAME, "active": False}]


def running_other_scripts(config, address: str) -> set[str]:
    """Which other clients' scripts run at delivery now: the active one, or those the portal's script includes."""
    scripts = doveadm.sieve_scripts(config, address)
    active = next((s["name"] for s in scripts if s["active"]), None)
    if active is None:
        return set()
    if active != sieve.SCRIPT_NAME:
        return {active}
    import re

    return set(re.findall(r'include :personal :optional "([^"]+)";',
                          doveadm.sieve_script(config, address, sieve.SCRIPT_NAME)))


def test_no_sequence_of_saves_changes_or_drops_another_clients_script_unasked(app, db, people, mail_stack):
    """Hypothesis drives the user, the helpdesk and another ManageSieve client in any order: another client's
    scripts are never changed, and one that runs keeps running unless its owner chose to replace it."""
    import itertools
    import uuid

    from hypothesis import HealthCheck
    from hypothesis import settings
    from hypothesis import strategies as st
    from hypothesis.stateful import RuleBasedStateMachine
    from hypothesis.stateful import initialize
    from hypothesis.stateful import invariant
    from hypothesis.stateful import rule

    counter = itertools.count()
    domain_id = db.execute("SELECT domain_id FROM virtual_users WHERE email = 'alice@r.example'").fetchone()[
        "domain_id"]

    class Mailbox(RuleBasedStateMachine):
        @initialize()
        def a_new_mailbox(self):
            self.address = f"m{uuid.uuid4().hex[:10]}@r.example"
            self.id = make_mailbox(db, self.address, PASSWORD)
            assert self.id and domain_id
            self.texts: dict[str, str] = {}
            self.running: set[str] = set()
            self.reply_on, self.filters = False, 0

        def other_active(self) -> str | None:
            with app.app_context():
                scripts = doveadm.sieve_scripts(app.config, self.address)
            return next((s["name"] for s in scripts if s["active"] and s["name"] != sieve.SCRIPT_NAME), None)

        @rule(name=st.sampled_from(["roundcube", "thunderbird"]), activate=st.booleans())
        def another_client_saves(self, name, activate):
            text = f'# version {next(counter)}\nif header :contains "subject" "{name}" {{ keep; }}\n'
            client = ManageSieve(mail_stack.managesieve_port, self.address, PASSWORD)
            try:
                client.put(name, text, activate=activate)
            finally:
                client.close()
            self.texts[name] = text
            if activate:
                self.running = {name}

        def _user_save(self, save, choice, reply_on, filters):
            other = self.other_active()
            portal_runs = reply_on or filters > 0
            with app.app_context():
                if other is not None and portal_runs and choice is None:
                    with pytest.raises(mail_rules.OtherScriptActive):
                        save(choice)
                    return
                save(choice)
            self.reply_on, self.filters = reply_on, filters
            if other is not None and portal_runs:
                self.running = {other} if choice == mail_rules.KEEP else set()
            elif other is None and choice == mail_rules.REPLACE:
                self.running = set()
            # Otherwise nothing of the portal's runs next to the active script, which stays as it is.

        @rule(enabled=st.booleans(), choice=st.sampled_from([None, mail_rules.KEEP, mail_rules.REPLACE]))
        def the_user_saves_the_reply(self, enabled, choice):
            wanted = sieve.Vacation(enabled, "Away", "Back soon.", None, None, 7, ())
            self._user_save(lambda c: mail_rules.save_vacation(
                db, Actor(self.address, "192.0.2.1", self.id), wanted, config=app.config, today=TODAY, choice=c),
                choice, enabled, self.filters)

        @rule(count=st.integers(0, 2), choice=st.sampled_from([None, mail_rules.KEEP, mail_rules.REPLACE]))
        def the_user_saves_filters(self, count, choice):
            wanted = [{"field": "subject", "match": "contains", "value": f"x{i}", "action": "seen", "argument": ""}
                      for i in range(count)]
            self._user_save(lambda c: mail_rules.save_filters(
                db, Actor(self.address, "192.0.2.1", self.id), wanted, config=app.config, max_destinations=10,
                delimiter="+", choice=c), choice, self.reply_on, count)

        @rule(enabled=st.booleans())
        def the_helpdesk_saves_the_reply(self, enabled):
            other = self.other_active()
            with app.app_context():
                mail_rules.save_vacation_of(db, actor(people, "help"), {"id": self.id, "email": self.address},
                                            sieve.Vacation(enabled, "On leave", "x", None, None, 7, ()),
                                            config=app.config, today=TODAY)
            self.reply_on = enabled
            if other is not None:
                self.running = {other}

        @invariant()
        def other_scripts_are_untouched_and_run_unless_replaced(self):
            if not hasattr(self, "address"):
                return
            with app.app_context():
                for name, text in self.texts.items():
                    assert doveadm.sieve_script(app.config, self.address, name) == text
                assert running_other_scripts(app.config, self.address) == self.running

    Mailbox.TestCase.settings = settings(max_examples=15, stateful_step_count=8, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
    Mailbox.TestCase().runTest()


# What a review found, each proven against the real stack.

def test_another_programs_own_reply_next_to_the_portals_is_refused_not_left_to_fail(app, db, people, mail_stack):
    """Pigeonhole allows one reply per message: kept next to the portal's, another program's reply would make
    the whole script fail at delivery, filters and all."""
    other = ManageSieve(mail_stack.managesieve_port, "alice@r.example", PASSWORD)
    try:
        other.put("roundcube", 'require "vacation";\nvacation :days 3 "Roundcube says away";\n')
    finally:
        other.close()
    with app.app_context():
        with pytest.raises(mail_rules.ScriptsConflict) as refused:
            mail_rules.save_vacation(db, actor(people, "alice"), vacation("Portal says away"), config=app.config,
                                     today=TODAY, choice=mail_rules.KEEP)
        assert "only one can run per message" in refused.value.problem and refused.value.name == "roundcube"
        with pytest.raises(mail_rules.MailRulesRefused):
            mail_rules.save_vacation_of(db, actor(people, "help"), {"id": people["alice"], "email": "alice@r.example"},
                                        vacation("Helpdesk says away"), config=app.config, today=TODAY)
        # Filters alone may run next to it; replacing it lets the portal's reply run.
        mail_rules.save_filters(db, actor(people, "alice"), [
            {"field": "subject", "match": "contains", "value": "x", "action": "seen", "argument": ""}],
            config=app.config, max_destinations=10, delimiter="+", choice=mail_rules.KEEP)
        mail_rules.save_vacation(db, actor(people, "alice"), vacation("Portal says away"), config=app.config,
                                 today=TODAY, choice=mail_rules.REPLACE)
    send_mail(mail_stack.smtp_port, "alice@r.example", "anyone?", sender="bob@r.example")
    wait_for_reply(mail_stack, "Portal says away")


def test_an_edit_of_the_portals_script_by_another_program_is_kept_and_asked_about(app, db, people, mail_stack):
    with app.app_context():
        mail_rules.save_vacation(db, actor(people, "alice"), vacation("First"), config=app.config, today=TODAY)
    edited = ('require ["fileinto", "mailbox"];\n'
              'if header :contains "subject" "[roundcube]" { fileinto :create "Edited"; }\n')
    other = ManageSieve(mail_stack.managesieve_port, "alice@r.example", PASSWORD)
    try:
        other.put(sieve.SCRIPT_NAME, edited)  # as Roundcube edits the active script in place
    finally:
        other.close()
    with app.app_context():
        with pytest.raises(mail_rules.OtherScriptActive) as asked:
            mail_rules.save_vacation(db, actor(people, "alice"), vacation("Second"), config=app.config, today=TODAY)
        assert asked.value.text == edited and asked.value.name.startswith(f"{sieve.SCRIPT_NAME}-edited-")
        mail_rules.save_vacation(db, actor(people, "alice"), vacation("Second"), config=app.config, today=TODAY,
                                 choice=mail_rules.KEEP)
        scripts = {s["name"]: s["active"] for s in doveadm.sieve_scripts(app.config, "alice@r.example")}
        copy = next(name for name in scripts if name.startswith(f"{sieve.SCRIPT_NAME}-edited-"))
        assert scripts == {sieve.SCRIPT_NAME: True, copy: False}
        assert doveadm.sieve_script(app.config, "alice@r.example", copy) == edited
        # The portal's own text again is no edit: the next save asks nothing.
        mail_rules.save_vacation(db, actor(people, "alice"), vacation("Third"), config=app.config, today=TODAY)
    send_mail(mail_stack.smtp_port, "alice@r.example", "[roundcube] hi", sender="bob@r.example")
    wait_for_reply(mail_stack, "Third")
    wait_for_maildir_message(maildir(mail_stack, "alice", ".Edited"), "[roundcube] hi")


def test_a_database_failure_after_the_rows_leaves_dovecot_as_it_was(app, db, people, mail_stack, monkeypatch):
    from portal.queries import audit

    with app.app_context():
        mail_rules.save_vacation(db, actor(people, "alice"), vacation("Before"), config=app.config, today=TODAY)
        before = doveadm.sieve_script(app.config, "alice@r.example", sieve.SCRIPT_NAME)

        def failing(*args, **kwargs):
            raise RuntimeError("the database went away at the audit row")

        monkeypatch.setattr(audit, "record", failing)
        with pytest.raises(RuntimeError):
            mail_rules.save_vacation(db, actor(people, "alice"), vacation("After"), config=app.config, today=TODAY)
        assert doveadm.sieve_script(app.config, "alice@r.example", sieve.SCRIPT_NAME) == before
    assert db.execute("SELECT subject FROM portal_vacations").fetchone()["subject"] == "Before"


def test_filters_refuse_what_would_fail_at_delivery(app, db, people, mail_stack):
    def save(rows):
        with app.app_context():
            mail_rules.save_filters(db, actor(people, "alice"), rows, config=app.config, max_destinations=10,
                                    delimiter="+")

    forwards = [{"field": "subject", "match": "contains", "value": "x", "action": "redirect",
                 "argument": f"f{i}@remote.invalid"} for i in range(5)]
    with pytest.raises(mail_rules.MailRulesRefused) as refused:
        save(forwards)
    assert "At most 4 forwarding addresses are allowed." in refused.value.problems
    for folder in ("Work/Projects", "Work..Projects", "Work.", ".Work"):
        with pytest.raises(mail_rules.MailRulesRefused) as refused:
            save([{"field": "from", "match": "contains", "value": "x", "action": "fileinto", "argument": folder}])
        assert "Separate folder levels with one dot" in refused.value.problems[0], folder
    save(forwards[:4] + [{"field": "list-id", "match": "is", "value": "dev.lists.example", "action": "fileinto",
                          "argument": "Lists.Dev"}])
    send_mail(mail_stack.smtp_port, "alice@r.example", "list post", sender="l@remote.invalid",
              headers={"List-Id": "Developers <dev.lists.example>"})
    wait_for_maildir_message(maildir(mail_stack, "alice", ".Lists.Dev"), "list post")


def test_no_reply_to_spam_or_to_what_a_filter_deletes(app, db, people, mail_stack):
    with app.app_context():
        mail_rules.save_vacation(db, actor(people, "alice"), vacation("Away"), config=app.config, today=TODAY)
        mail_rules.save_filters(db, actor(people, "alice"), [
            {"field": "subject", "match": "contains", "value": "casino", "action": "discard", "argument": ""}],
            config=app.config, max_destinations=10, delimiter="+")
    send_mail(mail_stack.smtp_port, "alice@r.example", "casino bonus", sender="bob@r.example")
    send_mail(mail_stack.smtp_port, "alice@r.example", "flagged", sender="carol@r.example",
              headers={"X-Spam-Flag": "YES"})
    wait_for_maildir_message(maildir(mail_stack, "alice"), "flagged")
    settle()
    assert replies_to_bob(mail_stack) == []
    assert not [m for m in messages_in(maildir(mail_stack, "carol")) if m["Auto-Submitted"]]


def test_the_reply_answers_for_own_addresses_by_default_not_for_groups(app, db, people, mail_stack):
    runner = app.test_cli_runner()
    for args in (["alias", "add", "all@r.example", "alice@r.example", "bob@r.example"],
                 ["alias-domain", "add", "r.test", "r.example"]):
        assert runner.invoke(args=args).exit_code == 0
    with app.app_context():
        offered = {c["address"]: c["own"] for c in mail_rules.reply_addresses(db, "alice@r.example")}
    assert offered == {"alice@r.example": True, "alice@r.test": True, "info@r.example": True,
                       "info@r.test": True, "all@r.example": False, "all@r.test": False}
    client = signed_in(app, "alice@r.example")
    page = client.get("/account/vacation").get_data(as_text=True)
    assert re.search(r'value="alice@r\.test"[^>]*checked', page) or re.search(r'checked[^>]*value="alice@r\.test"',
                                                                              page)
    assert not re.search(r'value="all@r\.example"[^>]*checked', page)
    with app.app_context():
        mail_rules.save_vacation(db, actor(people, "alice"), vacation("Via alias domain"), config=app.config,
                                 today=TODAY)
    send_mail(mail_stack.smtp_port, "alice@r.test", "to the alias domain", sender="bob@r.example")
    wait_for_reply(mail_stack, "Via alias domain")


def test_the_audit_log_says_what_goes_out_in_the_users_name(app, db, people, mail_stack):
    with app.app_context():
        mail_rules.save_vacation_of(db, actor(people, "help"), {"id": people["alice"], "email": "alice@r.example"},
                                    vacation("Alice is out", body="Call reception."), config=app.config, today=TODAY)
        mail_rules.save_filters(db, actor(people, "alice"), [
            {"field": "from", "match": "contains", "value": "x", "action": "redirect", "argument": "c@remote.invalid"}],
            config=app.config, max_destinations=10, delimiter="+")
    helper = signed_in(app, "help@r.example")
    page = helper.get("/helpdesk/mailboxes/alice@r.example").get_data(as_text=True)
    assert "Filters forward copies to c@remote.invalid." in page and "Out-of-office reply on." in page
    rows = {r["action"]: r["summary"] for r in db.execute("SELECT action, summary FROM portal_audit_log")}
    assert rows["vacation.update"]["subject"] == "Alice is out"
    assert rows["vacation.update"]["body_sha256"] and "Call reception." not in str(rows["vacation.update"])
    assert rows["filters.update"]["forwards_to"] == ["c@remote.invalid"]


def test_a_disabled_mailbox_gets_a_clear_refusal_not_try_again(app, db, people, mail_stack):
    assert app.test_cli_runner().invoke(args=["mailbox", "disable", "alice@r.example", "--reason", "left"]
                                        ).exit_code == 0
    with app.app_context():
        with pytest.raises(mail_rules.MailRulesRefused) as refused:
            mail_rules.save_vacation_of(db, actor(people, "help"), {"id": people["alice"], "email": "alice@r.example"},
                                        vacation(), config=app.config, today=TODAY)
    assert "enable it first" in refused.value.problems[0]
    assert db.execute("SELECT count(*) AS n FROM portal_vacations").fetchone()["n"] == 0


def test_no_reply_to_ones_own_address(app, db, people, mail_stack):
    with app.app_context():
        mail_rules.save_vacation(db, actor(people, "alice"), vacation("Away"), config=app.config, today=TODAY)
    send_mail(mail_stack.smtp_port, "alice@r.example", "note to self", sender="alice@r.example")
    send_mail(mail_stack.smtp_port, "alice@r.example", "from my alias", sender="info@r.example")
    wait_for_maildir_message(maildir(mail_stack, "alice"), "from my alias")
    settle()
    assert not [m for m in messages_in(maildir(mail_stack, "alice")) if m["Auto-Submitted"]]
