"""Helpers that talk to the real test stack: make mailboxes, send mail, log in over IMAP."""

from __future__ import annotations

import email
import hashlib
import smtplib
import threading
import time
from email.message import EmailMessage
from pathlib import Path

import imapclient

from portal.addresses import domain_of
from portal.passwords import hash_password
from portal.queries import domains
from portal.queries import mailboxes


def make_mailbox(conn, address: str, password: str) -> int:
    """Create the mailbox (and its domain) with a real SHA512-CRYPT hash; return its id."""
    with conn.transaction():
        domain_id = domains.ensure_domain(conn, domain_of(address))
        return mailboxes.upsert_mailbox(conn, domain_id, address, hash_password(password))


def imap_login(port: int, address: str, password: str, client_ip: str | None = None, timeout: float = 10):
    """Log in with AUTHENTICATE PLAIN; return the logged-in client or raise LoginError.

    ``client_ip`` is sent with IMAP ID so that Dovecot's auth penalty for a failed
    attempt lands on that (made-up) client rather than on 127.0.0.1 for every test.
    """
    client = imapclient.IMAPClient("127.0.0.1", port=port, ssl=False, timeout=timeout)
    try:
        if client_ip:
            client.id_({"x-originating-ip": client_ip})
        client.plain_login(address, password)
    except Exception:
        client.shutdown()
        raise
    return client


def send_mail(port: int, to: str, subject: str, body: str = "hello", sender: str = "sender@remote.invalid") -> None:
    """Submit one message to the stack's Postfix over SMTP."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.send_message(message)


def wait_for_maildir_message(maildir: Path, subject: str, seconds: float = 15) -> email.message.Message:
    """Wait until a message with the subject lands in maildir/new or cur; return it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for folder in ("new", "cur"):
            directory = maildir / folder
            if directory.is_dir():
                for path in directory.iterdir():
                    message = email.message_from_bytes(path.read_bytes())
                    if message["Subject"] == subject:
                        return message
        time.sleep(0.1)
    raise AssertionError(f"no message {subject!r} in {maildir} after {seconds} s")


def imap_subjects(client) -> list[str]:
    """Return the subjects of every message in INBOX."""
    client.select_folder("INBOX", readonly=True)
    uids = client.search("ALL")
    if not uids:
        return []
    fetched = client.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
    subjects = []
    for data in fetched.values():
        header = email.message_from_bytes(data[b"BODY[HEADER.FIELDS (SUBJECT)]"])
        subjects.append(header["Subject"])
    return subjects


class SteadySender:
    """Sends a message to ``to`` through Postfix on ``port`` every 0.2 s while in use; keeps what came back."""

    def __init__(self, port: int, to: str, prefix: str = "steady"):
        self.port, self.to, self.prefix = port, to, prefix
        self.sent: list[str] = []
        self.refused: list[tuple[str, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self):
        n = 0
        while not self.stop.is_set():
            subject = f"{self.prefix} {n}"
            try:
                send_mail(self.port, self.to, subject)
                self.sent.append(subject)
            except (smtplib.SMTPException, OSError) as exc:
                self.refused.append((subject, repr(exc)))
            n += 1
            time.sleep(0.2)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=30)


def file_fingerprints(*tops: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[str, int, int, int]]:
    """Every file under the folders: its hash, mode, owner and group (paths containing ``skip`` parts left out)."""
    found = {}
    for top in tops:
        for path in sorted(top.rglob("*")):
            if path.is_file() and not any(part in str(path) for part in skip):
                info = path.stat()
                found[str(path)] = (hashlib.sha256(path.read_bytes()).hexdigest(), info.st_mode & 0o7777,
                                    info.st_uid, info.st_gid)
    return found
