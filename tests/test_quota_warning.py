"""Quota warnings: Dovecot's quota-warning service runs the portal's command, which mails the user once per limit.

Everything here goes through the real stack: messages delivered by Postfix over LMTP
fill the mailbox, Dovecot counts them and runs the rendered script as it passes 80 %
and 95 %, and the portal's warning comes back through Postfix and is read over IMAP.
The script reads the stack's portal.toml (not the tests' app settings): the same
database, its own public_url.
"""

from __future__ import annotations

import email
import time
import tomllib
from email import policy

import pytest
from flask_babel import force_locale

from portal import notices
from portal.queries import notices as notice_queries
from tests.conftest import new_client_ip
from tests.mail import imap_login
from tests.mail import make_mailbox
from tests.mail import send_mail
from tests.mail import wait_for_maildir_message

# Touches Dovecot or Postfix: scripts/test runs it on the other Debian release too.
pytestmark = pytest.mark.mail_server

ADDRESS = "wendy@warn.example"
PASSWORD = "a long enough test password 19"
LIMIT = 1024 * 1024  # "1 MB", as Dovecot counts
LINE = "x" * 70 + "\n"  # short lines: sent as 7bit, so a message's size is known to a few hundred bytes


@pytest.fixture
def mailbox(app, db):
    mailbox_id = make_mailbox(db, ADDRESS, PASSWORD)
    result = app.test_cli_runner().invoke(args=["mailbox", "set-quota", "--", ADDRESS, "1 MB"])
    assert result.exit_code == 0, result.output
    return mailbox_id


@pytest.fixture
def stack_settings(mail_stack) -> dict:
    """The settings Dovecot's quota-warning script runs the portal with."""
    with open(mail_stack.portal_config, "rb") as handle:
        return tomllib.load(handle)


def deliver(mail_stack, subject: str, size: int) -> None:
    """Send a message of about ``size`` bytes through Postfix and wait until Dovecot has stored it."""
    send_mail(mail_stack.smtp_port, ADDRESS, subject, body=LINE * (size // len(LINE)))
    wait_for_maildir_message(mail_stack.mail_root / "warn.example" / "wendy", subject)


def used_bytes(db) -> int:
    """What Dovecot counts for the mailbox (copied to portal_quota_usage after every delivery)."""
    row = db.execute("SELECT bytes FROM portal_quota_usage WHERE email = %s", (ADDRESS,)).fetchone()
    return row["bytes"] if row else 0


def warnings_in_maildir(mail_stack, sender: str) -> list[email.message.EmailMessage]:
    """The messages from the portal's address that Dovecot has stored so far."""
    found = []
    for folder in ("new", "cur"):
        directory = mail_stack.mail_root / "warn.example" / "wendy" / folder
        for path in sorted(directory.iterdir()) if directory.is_dir() else []:
            message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
            if sender in str(message["From"]):
                found.append(message)
    return found


def wait_for_warnings(mail_stack, sender: str, count: int, seconds: float = 30) -> None:
    """Wait until ``count`` warnings have been stored (Dovecot runs the script after the delivery)."""
    deadline = time.monotonic() + seconds
    while len(warnings_in_maildir(mail_stack, sender)) < count:
        assert time.monotonic() < deadline, f"fewer than {count} quota warnings after {seconds} s"
        time.sleep(0.2)


def warnings_over_imap(mail_stack, sender: str) -> list[email.message.EmailMessage]:
    """Every message from the portal's address in INBOX, read as a mail client reads it."""
    client = imap_login(mail_stack.imap_port, ADDRESS, PASSWORD, client_ip=new_client_ip())
    try:
        client.select_folder("INBOX", readonly=True)
        uids = client.search(["FROM", sender])
        fetched = client.fetch(uids, ["RFC822"]) if uids else {}
        return [email.message_from_bytes(fetched[uid][b"RFC822"], policy=policy.default) for uid in sorted(fetched)]
    finally:
        client.logout()


def expected_subject(app, percent: int, language: str) -> str:
    """The subject the portal writes for this warning in that language."""
    with app.app_context(), force_locale(language):
        return notices.quota_warning(ADDRESS, percent, "1 MB").subject


def assert_warning(message, stack_settings: dict, subject: str) -> None:
    """A warning from the portal's address, with the limit and a link to the storage page in both parts."""
    assert stack_settings["notice_from"] in str(message["From"])
    assert str(message["Subject"]) == subject
    assert message["Auto-Submitted"] == "auto-generated"
    link = stack_settings["public_url"].rstrip("/") + "/account/storage"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "1 MB" in text and link in text
    assert link in html


def test_passing_80_percent_by_delivery_sends_exactly_one_warning(app, db, mail_stack, mailbox, stack_settings):
    sender = stack_settings["notice_from"]
    deliver(mail_stack, "filler 1", 600 * 1024)
    assert used_bytes(db) < 0.8 * LIMIT
    assert warnings_in_maildir(mail_stack, sender) == []
    deliver(mail_stack, "filler 2", 260 * 1024)  # past 80 %
    wait_for_warnings(mail_stack, sender, 1)
    # Another message that stays under 95 %: no second warning.
    deliver(mail_stack, "filler 3", 20 * 1024)
    time.sleep(3)  # time for a wrong second run of the script to arrive
    assert 0.8 * LIMIT < used_bytes(db) < 0.95 * LIMIT
    warnings = warnings_over_imap(mail_stack, sender)
    assert len(warnings) == 1, [str(w["Subject"]) for w in warnings]
    assert_warning(warnings[0], stack_settings, expected_subject(app, 80, "en"))


def test_passing_95_percent_sends_the_second_warning_in_the_users_language(app, db, mail_stack, mailbox,
                                                                           stack_settings):
    sender = stack_settings["notice_from"]
    with db.transaction():
        notice_queries.remember_language(db, mailbox, "ko")
    deliver(mail_stack, "filler 1", 860 * 1024)  # past 80 %
    wait_for_warnings(mail_stack, sender, 1)
    deliver(mail_stack, "filler 2", 120 * 1024)  # past 95 %, under the limit
    wait_for_warnings(mail_stack, sender, 2)
    time.sleep(2)
    assert 0.95 * LIMIT < used_bytes(db) < LIMIT
    warnings = warnings_over_imap(mail_stack, sender)
    assert [str(w["Subject"]) for w in warnings] == [expected_subject(app, 80, "ko"), expected_subject(app, 95, "ko")]
    for message, percent in zip(warnings, (80, 95), strict=True):
        assert_warning(message, stack_settings, expected_subject(app, percent, "ko"))
        assert '<html lang="ko">' in message.get_body(("html",)).get_content()
