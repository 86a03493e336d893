"""Helpers that talk to the real test stack: make mailboxes, send mail, log in over IMAP."""

from __future__ import annotations

import base64
import email
import hashlib
import re
import smtplib
import socket
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


def send_mail(port: int, to: str, subject: str, body: str = "hello", sender: str = "sender@remote.invalid",
              headers: dict[str, str] | None = None) -> None:
    """Submit one message to the stack's Postfix over SMTP (``headers``: more header fields, e.g. List-Id)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    for name, value in (headers or {}).items():
        message[name] = value
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


class ManageSieveError(Exception):
    """The ManageSieve server answered NO or BYE."""


class ManageSieve:
    """A minimal ManageSieve client (RFC 5804), as Roundcube or Thunderbird would speak it: log in, store a
    script, make it active, read the list. Enough to prove the portal keeps what other clients write."""

    def __init__(self, port: int, address: str, password: str):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")
        self._response()
        token = base64.b64encode(f"\0{address}\0{password}".encode()).decode()
        self._command(f'AUTHENTICATE "PLAIN" "{token}"'.encode())

    def _response(self) -> list[bytes]:
        lines: list[bytes] = []
        while True:
            line = self.file.readline()
            if not line:
                raise ManageSieveError("connection closed")
            if line.startswith(b"OK"):
                return lines
            if line.startswith((b"NO", b"BYE")):
                raise ManageSieveError(line.decode(errors="replace").strip())
            if line == b"\r\n":  # the end of the line that held a literal
                continue
            literal = re.search(rb"\{(\d+)\}\r\n$", line)
            lines.append(self.file.read(int(literal.group(1))) if literal else line)

    def _command(self, command: bytes, literal: bytes | None = None) -> list[bytes]:
        if literal is not None:
            command += b" {%d+}\r\n" % len(literal) + literal
        self.sock.sendall(command + b"\r\n")
        return self._response()

    def put(self, name: str, script: str, activate: bool = True) -> None:
        """Store a script (compiled by the server) and make it the active one."""
        self._command(f'PUTSCRIPT "{name}"'.encode(), script.encode())
        if activate:
            self._command(f'SETACTIVE "{name}"'.encode())

    def scripts(self) -> dict[str, bool]:
        """Every script by name, and whether it is the active one."""
        found = {}
        for line in self._command(b"LISTSCRIPTS"):
            match = re.match(rb'"([^"]*)"( ACTIVE)?', line)
            if match:
                found[match.group(1).decode()] = bool(match.group(2))
        return found

    def get(self, name: str) -> str:
        """A script's text."""
        return b"".join(self._command(f'GETSCRIPT "{name}"'.encode())).decode()

    def close(self) -> None:
        """Log out."""
        try:
            self._command(b"LOGOUT")
        except (ManageSieveError, OSError):
            pass
        self.file.close()
        self.sock.close()
