"""Quota: limits from the portal, enforced by the real Dovecot, usage shown from Dovecot's own figures."""

from __future__ import annotations

import email
import os
import re
import smtplib
import subprocess
import time

import pytest

from portal import quota
from portal.queries import quota as quota_queries
from tests.conftest import make_client
from tests.conftest import sign_in
from tests.mail import make_mailbox
from tests.mail import send_mail
from tests.mail import wait_for_maildir_message

# Touches Dovecot or Postfix: scripts/test runs it on the other Debian release too.
pytestmark = pytest.mark.mail_server

ADDRESS = "quinn@quota.example"
OTHER = "otto@quota.example"
PASSWORD = "a long enough test password 9"


@pytest.fixture
def mailbox(db):
    return make_mailbox(db, ADDRESS, PASSWORD)


@pytest.fixture
def user(app, mailbox):
    client = make_client(app)
    assert sign_in(client, ADDRESS, PASSWORD).status_code == 302
    return client


def doveadm_quota(mail_stack, address: str) -> dict[str, tuple[int, str]]:
    """Dovecot's own figures: {"STORAGE": (KiB used, limit), "MESSAGE": (count, limit)}."""
    out = subprocess.run(
        ["doveadm", "-c", str(mail_stack.dovecot_conf), "-f", "tab", "quota", "get", "-u", address],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    figures = {}
    for line in out[1:]:
        name, kind, value, limit, _percent = line.split("\t")
        figures[kind] = (int(value), limit)
    return figures


def usage_row(db, address: str) -> dict | None:
    return db.execute("SELECT bytes, messages FROM portal_quota_usage WHERE email = %s", (address,)).fetchone()


def deliver(mail_stack, subject: str, size: int, to: str = ADDRESS) -> None:
    send_mail(mail_stack.smtp_port, to, subject, body="x" * size)
    local, _, domain = to.partition("@")
    wait_for_maildir_message(mail_stack.mail_root / domain / local, subject)


def wait_for_usage(db, address: str, messages: int, seconds: float = 10) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        row = usage_row(db, address)
        if row and row["messages"] == messages:
            return row
        assert time.monotonic() < deadline, f"Dovecot reported {row}, expected {messages} messages"
        time.sleep(0.1)


def set_quota(app, address: str, size: str):
    return app.test_cli_runner().invoke(args=["mailbox", "set-quota", "--", address, size])


def lmtp_rcpt(mail_stack, address: str, size: int) -> tuple[int, bytes]:
    """Hand Dovecot's LMTP a message of this size directly; return its answer to it."""
    message = f"From: sender@remote.invalid\r\nTo: {address}\r\nSubject: lmtp {size}\r\n\r\n" + "x" * size
    with smtplib.LMTP("127.0.0.1", mail_stack.lmtp_port, timeout=10) as lmtp:
        try:
            lmtp.sendmail("sender@remote.invalid", [address], message)
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, exc.smtp_error
        except smtplib.SMTPRecipientsRefused as exc:
            return exc.recipients[address]
    return 250, b"accepted"


# --- usage ----------------------------------------------------------------------------------------------


def test_portal_shows_what_dovecot_counts(app, user, db, mail_stack):
    for n, size in enumerate((1200, 5000, 30000)):
        deliver(mail_stack, f"usage {n}", size)
    row = wait_for_usage(db, ADDRESS, 3)
    figures = doveadm_quota(mail_stack, ADDRESS)
    assert figures["MESSAGE"][0] == 3
    # doveadm reports KiB; the clone holds the same count in bytes.
    assert abs(row["bytes"] / 1024 - figures["STORAGE"][0]) < 1
    assert row["bytes"] > 36000

    page = user.get("/account/storage").get_data(as_text=True)
    assert f"<strong>{quota.format_size(row['bytes'])}</strong> used" in page
    assert "3 messages" in page
    assert "no size limit" in page


def test_no_usage_row_yet_shows_zero(user, db):
    assert usage_row(db, ADDRESS) is None
    response = user.get("/account/storage")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "<strong>0 B</strong> used" in page and "0 messages" in page
    assert "has not reported any mail for this mailbox yet" in page


def test_limit_bar_and_warning(app, user, db, mail_stack):
    # Large enough that Dovecot's 80 % warning (tests/test_quota_warning.py) does not itself take it past 95 %.
    assert set_quota(app, ADDRESS, "400 KB").exit_code == 0
    deliver(mail_stack, "fills it", 365000)
    wait_for_usage(db, ADDRESS, 1)
    page = user.get("/account/storage").get_data(as_text=True)
    assert re.search(r"of 400 KB used\s+\((9\d) ?&nbsp;%\)", page)
    assert "<meter" in page and 'max="409600"' in page
    assert "Your mailbox is almost full" in page
    # Passing 80 % ran Dovecot's quota-warning service: its mail must arrive now, not in the next test's mailbox.
    wait_for_maildir_message(mail_stack.mail_root / "quota.example" / "quinn",
                             "Your mailbox quinn@quota.example is 80 percent full")


# --- enforcement by Dovecot -------------------------------------------------------------------------------


def test_dovecot_refuses_what_would_exceed_the_limit(app, mailbox, db, mail_stack):
    deliver(mail_stack, "before the limit", 2000)
    result = set_quota(app, ADDRESS, "20 KB")
    assert result.exit_code == 0, result.output
    assert "limit 20 KB" in result.output

    # Dovecot's LMTP refuses the message, so Postfix bounces it to the sender.
    code, reason = lmtp_rcpt(mail_stack, ADDRESS, 30000)
    assert code == 552 and b"Quota exceeded" in reason
    send_mail(mail_stack.smtp_port, ADDRESS, "too big", body="x" * 30000, sender="bounce-me@remote.invalid")
    deliver(mail_stack, "small enough", 3000)
    time.sleep(0.5)
    log = (mail_stack.dir / "log" / "postfix.log").read_text()
    assert re.search(r"to=<quinn@quota\.example>.*status=bounced .*552 5\.2\.2", log)
    stored = mail_stack.mail_root / "quota.example" / "quinn" / "new"
    subjects = {email.message_from_bytes(path.read_bytes())["Subject"] for path in stored.iterdir()}
    assert subjects == {"before the limit", "small enough"}
    assert wait_for_usage(db, ADDRESS, 2)["messages"] == 2


def test_new_limit_applies_without_restarting_dovecot(app, mailbox, mail_stack):
    pid = (mail_stack.dovecot_conf.parent / "run" / "master.pid").read_text()
    assert set_quota(app, ADDRESS, "10 KB").exit_code == 0
    assert lmtp_rcpt(mail_stack, ADDRESS, 50000)[0] == 552
    assert set_quota(app, ADDRESS, "1 MB").exit_code == 0
    assert lmtp_rcpt(mail_stack, ADDRESS, 50000)[0] == 250
    deliver(mail_stack, "after raising", 50000)
    assert (mail_stack.dovecot_conf.parent / "run" / "master.pid").read_text() == pid


def test_domain_default_and_ceiling(app, mailbox, db, mail_stack):
    db.execute("UPDATE virtual_domains SET default_quota_bytes = 30 * 1024, max_quota_bytes = 100 * 1024")
    assert lmtp_rcpt(mail_stack, ADDRESS, 40000)[0] == 552  # the domain default applies
    result = set_quota(app, ADDRESS, "1 MB")
    assert result.exit_code != 0 and "The most this domain allows per mailbox is 100 KB." in result.output
    assert db.execute("SELECT quota_bytes FROM virtual_users").fetchone()["quota_bytes"] == 0
    assert set_quota(app, ADDRESS, "100 KB").exit_code == 0
    assert lmtp_rcpt(mail_stack, ADDRESS, 40000)[0] == 250
    # A ceiling lowered later still caps what Dovecot enforces.
    db.execute("UPDATE virtual_domains SET max_quota_bytes = 20 * 1024")
    assert quota_queries.mailbox_usage(db, ADDRESS)["limit_bytes"] == 20 * 1024
    assert lmtp_rcpt(mail_stack, ADDRESS, 40000)[0] == 552


def test_quota_change_is_audited(app, mailbox, db):
    set_quota(app, ADDRESS, "5 MB")
    row = db.execute("SELECT actor, action, target, summary FROM portal_audit_log").fetchone()
    # set-quota goes through the same rule as the admin page's mailbox form, so it is recorded as that change.
    assert (row["actor"], row["action"], row["target"]) == ("cli", "mailbox.update", ADDRESS)
    assert row["summary"] == {"quota_bytes": {"before": 0, "after": 5 * 1024 * 1024}}


@pytest.mark.parametrize(
    ("size", "message"),
    [("12 XB", "Write a size such as 500 MB"), ("-5 MB", "Write a size"), ("lots", "Write a size"),
     ("500", "Add a unit"), ("2000 TB", "more than this portal allows")],
)
def test_nonsense_sizes_are_explained(app, mailbox, db, size, message):
    result = set_quota(app, ADDRESS, size)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert db.execute("SELECT quota_bytes FROM virtual_users").fetchone()["quota_bytes"] == 0


def test_unknown_mailbox(app, db):
    result = set_quota(app, "ghost@quota.example", "1 GB")
    assert result.exit_code != 0 and "there is no mailbox ghost@quota.example" in result.output


# --- shared pieces ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [("0", 0), ("", 0), ("500 MB", 500 * 1024**2), ("2GB", 2 * 1024**3), ("1.5 G", int(1.5 * 1024**3)),
     ("1,5 GiB", int(1.5 * 1024**3)), ("100 kb", 102400), ("10 B", 10), ("3 T", 3 * 1024**4)],
)
def test_parse_size(text, size):
    assert quota.parse_size(text) == size


@pytest.mark.parametrize(
    ("size", "text"), [(0, "0 B"), (512, "512 B"), (40960, "40 KB"), (1536 * 1024, "1.5 MB"), (5 * 1024**3, "5 GB")]
)
def test_format_size(size, text):
    assert quota.format_size(size) == text


def test_admin_usage_list_sorted_by_usage(db, mail_stack):
    make_mailbox(db, ADDRESS, PASSWORD)
    make_mailbox(db, OTHER, PASSWORD)
    make_mailbox(db, "idle@quota.example", PASSWORD)
    deliver(mail_stack, "small", 1000, to=ADDRESS)
    deliver(mail_stack, "large", 20000, to=OTHER)
    wait_for_usage(db, OTHER, 1)
    wait_for_usage(db, ADDRESS, 1)
    domain_id = db.execute("SELECT id FROM virtual_domains").fetchone()["id"]
    rows = quota_queries.domain_usage(db, domain_id, sort="usage")
    assert [r["email"] for r in rows] == [OTHER, ADDRESS, "idle@quota.example"]
    assert rows[-1]["used_bytes"] == 0 and rows[-1]["messages"] == 0
    with pytest.raises(KeyError):
        quota_queries.domain_usage(db, domain_id, sort="bytes; DROP TABLE virtual_users")


def test_storage_page_needs_sign_in(client):
    assert client.get("/account/storage").status_code == 302


def test_sub_byte_sizes_are_refused():
    with pytest.raises(quota.InvalidSize, match="less than one byte"):
        quota.parse_size("0.0001 KB")


def test_usage_imported_from_doveadm(app, mailbox, db, mail_stack):
    deliver(mail_stack, "already there", 20000)
    wait_for_usage(db, ADDRESS, 1)
    db.execute("DELETE FROM portal_quota_usage")  # as on a server where quota was just switched on
    listing = subprocess.run(
        ["doveadm", "-c", str(mail_stack.dovecot_conf), "-f", "tab", "quota", "get", "-A"],
        capture_output=True, text=True, check=True,
    ).stdout
    result = app.test_cli_runner().invoke(args=["quota", "import"], input=listing)
    assert result.exit_code == 0, result.output
    row = usage_row(db, ADDRESS)
    assert row["messages"] == 1 and 19000 < row["bytes"] < 23000
    bad = app.test_cli_runner().invoke(args=["quota", "import"], input="not\ttab output\n")
    assert bad.exit_code != 0 and "nothing imported" in bad.output


def test_storage_page_lists_the_biggest_folders_as_dovecot_counts_them(app, user, mailbox, db, mail_stack):
    from tests.conftest import new_client_ip
    from tests.mail import imap_login

    deliver(mail_stack, "small one", 2_000)
    imap = imap_login(mail_stack.imap_port, ADDRESS, PASSWORD, client_ip=new_client_ip())
    try:
        folder = "Archive 2026 <보관>"
        imap.create_folder(folder)
        for n in range(2):
            imap.append(folder, f"Subject: kept {n}\r\n\r\n".encode() + b"y" * 30_000)
    finally:
        imap.logout()
    # What Sieve's duplicate tracking (vacation replies) leaves in the home, which is the maildir here: Dovecot
    # lists it as the folders "dovecot", "dovecot.lda-dupes" and "dovecot.lda-dupes.locks". Not the user's.
    maildir = mail_stack.mail_root / "quota.example" / "quinn"
    owner = maildir.stat()
    (maildir / ".dovecot.lda-dupes").write_bytes(b"")
    (maildir / ".dovecot.lda-dupes.locks").mkdir()
    for made in (maildir / ".dovecot.lda-dupes", maildir / ".dovecot.lda-dupes.locks"):
        os.chown(made, owner.st_uid, owner.st_gid)

    page = user.get("/account/storage").get_data(as_text=True)
    assert "Biggest folders" in page
    assert "dovecot" not in page.lower().replace("dovecot counts", "")
    rows = re.findall(r"<tr><td>([^<]+)</td><td class=\"num\">([^<]+)</td><td class=\"num\">(\d+)</td></tr>", page)
    assert [(name, count) for name, _size, count in rows] == [("Archive 2026 &lt;보관&gt;", "2"), ("INBOX", "1")]
    assert rows[0][1].endswith("KB")


def test_storage_page_stands_when_doveadm_cannot_answer(app_factory, mailbox, db, mail_stack):
    from tests.conftest import free_port

    app = app_factory(DOVEADM_URL=f"http://127.0.0.1:{free_port()}/doveadm/v1")
    client = make_client(app)
    assert sign_in(client, ADDRESS, PASSWORD).status_code == 302
    response = client.get("/account/storage")
    assert response.status_code == 200
    assert "The mail server cannot list the folders right now." in response.get_data(as_text=True)
