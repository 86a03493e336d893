"""The test stack itself: mail submitted over SMTP reaches the maildir through LMTP and reads back over IMAP."""

from __future__ import annotations

import socket

import pytest
import stack

from tests.mail import imap_login
from tests.mail import imap_subjects
from tests.mail import make_mailbox
from tests.mail import send_mail
from tests.mail import wait_for_maildir_message

# Touches Dovecot or Postfix: scripts/test runs it on the other Debian release too.
pytestmark = pytest.mark.mail_server


def test_smtp_to_lmtp_to_imap(db, mail_stack):
    make_mailbox(db, "dora@stack.example", "dora's long password")

    send_mail(mail_stack.smtp_port, "dora@stack.example", "smoke test")

    message = wait_for_maildir_message(mail_stack.mail_root / "stack.example" / "dora", "smoke test")
    assert "dora@stack.example" in message["Delivered-To"]
    client = imap_login(mail_stack.imap_port, "dora@stack.example", "dora's long password")
    try:
        assert imap_subjects(client) == ["smoke test"]
    finally:
        client.logout()


def test_unknown_recipient_is_refused_at_smtp_time(db, mail_stack):
    make_mailbox(db, "dora@stack.example", "dora's long password")
    import smtplib

    with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
        send_mail(mail_stack.smtp_port, "nobody@stack.example", "lost")
    code, reason = caught.value.recipients["nobody@stack.example"]
    assert code == 550 and b"User unknown" in reason


def test_stack_uses_its_own_ports_only(mail_stack):
    ports = {mail_stack.imap_port, mail_stack.lmtp_port, mail_stack.smtp_port, stack.PG_PORT}
    assert not ports & {25, 143, 587, 993, 5432}
    for port in ports:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass


def test_up_is_idempotent_and_quick(mail_stack):
    import time

    started = time.monotonic()
    stack.up(mail_stack)
    assert time.monotonic() - started < 10
    assert stack.status(mail_stack)
