"""README "Production" on a server built with the deployment guide: mail flows before, during and after.

``scripts/guide_server.py`` stands the guide's server up in a minimal root of
each Debian release (``scripts/other_release.py`` runs this module there, with
``PORTAL_GUIDE_SERVER=yes``): the system's PostgreSQL on 5432 with ``mailuser``
owning the guide's tables, Postfix on 25 and Dovecot on 143 from the real
``/etc/postfix`` and ``/etc/dovecot``. The operator's steps run as the README
prints them: its SQL for the database roles (taken from the README itself),
``flask db upgrade``, then ``flask mailserver apply`` while mail keeps coming.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import smtplib
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import guide_server
import imapclient
import pytest

from tests.mail import SteadySender
from tests.mail import file_fingerprints
from tests.mail import imap_login
from tests.mail import send_mail
from tests.mail import wait_for_maildir_message

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    os.environ.get("PORTAL_GUIDE_SERVER") != "yes",
    reason="replaces /etc/postfix and /etc/dovecot: runs in the Debian roots of scripts/other_release.py"
           " (scripts/test with no arguments runs it there)")

SMTP, IMAP = 25, 143
MAILDIRS = guide_server.MAIL_ROOT / guide_server.DOMAIN
CONFIG_DIRS = (guide_server.POSTFIX_DIR, guide_server.DOVECOT_DIR)


def readme_role_sql() -> list[str]:
    """The SQL blocks of README "Production", step 3 (database roles), as an operator copies them."""
    readme = (ROOT / "README.md").read_text()
    step = readme[readme.index("3. **Database roles.**"):readme.index("4. **Upgrade the schema**")]
    return [re.sub(r"(?m)^   ", "", block) for block in re.findall(r"```sql\n(.*?)   ```", step, re.S)]


def flask(config: Path, *args: str) -> subprocess.CompletedProcess:
    """Run ``flask --app app ARGS`` as the operator does, with PORTAL_CONFIG set."""
    env = {"PATH": os.environ["PATH"], "PORTAL_CONFIG": str(config), "LANG": "C.UTF-8"}
    return subprocess.run([sys.executable, "-m", "flask", "--app", "app", *args], cwd=ROOT, env=env,  # noqa: S603
                          capture_output=True, text=True, timeout=180)


def mail_log_lines(recipient: str) -> list[str]:
    """Postfix's log lines about deliveries to one recipient."""
    return [line for line in guide_server.MAIL_LOG.read_text().splitlines() if f"to=<{recipient}>" in line]


@dataclass
class Adopted:
    """The server after README steps 3 to 5, and what each step answered."""

    server: guide_server.GuideServer
    config: Path
    apply_args: list[str]
    upgrade: subprocess.CompletedProcess
    dry_run: subprocess.CompletedProcess
    applied: subprocess.CompletedProcess
    sender: SteadySender
    guide_files: dict


@pytest.fixture(scope="module")
def adopted(tmp_path_factory) -> Adopted:
    """Stand up the guide's server, check it works, then follow README steps 3, 4 and 5 while mail flows."""
    server = guide_server.up()
    work = tmp_path_factory.mktemp("operator")
    # Before: the guide's server delivers through its alias and signs in with the guide's bare hashes.
    send_mail(SMTP, "info@guide.example", "before the portal")
    wait_for_maildir_message(MAILDIRS / "anna", "before the portal")
    imap_login(IMAP, "anna@guide.example", server.mailboxes["anna@guide.example"]).logout()

    portal_password, purge_password = secrets.token_hex(16), secrets.token_hex(16)
    config = work / "portal.toml"
    config.write_text(
        f'database_url = "postgresql://portal:{portal_password}@127.0.0.1:5432/mailserver"\n'
        f'secret_key = "{secrets.token_hex(32)}"\n'
        'imap_host = "127.0.0.1"\nimap_port = 143\nimap_security = "plain"\n'
        'mail_root = "/var/mail/vhosts"\ncookie_secure = true\n'
        f'doveadm_url = "http://127.0.0.1:8080/doveadm/v1"\ndoveadm_api_key = "{secrets.token_hex(24)}"\n')
    portal_role, mail_role_grants, purge_role = readme_role_sql()
    assert "GRANT SELECT ON virtual_domains, virtual_users, virtual_aliases TO mailuser" in portal_role
    assert "portal_quota_usage TO mailuser" in mail_role_grants  # what apply grants itself
    guide_files = file_fingerprints(*CONFIG_DIRS)
    apply_args = ["mailserver", "apply", "--database-url", server.mail_database_url]
    with SteadySender(SMTP, "ben@guide.example", "through the operator path") as sender:
        time.sleep(1)
        # Step 3: the portal's role takes the tables over from mailuser, in one transaction.
        guide_server.psql(portal_role.replace("'...'", f"'{portal_password}'"), database="mailserver")
        # Step 4: the schema upgrade adopts the tables in place.
        upgrade = flask(config, "db", "upgrade")
        guide_server.psql(purge_role.replace("'...'", f"'{purge_password}'"), database="mailserver")
        # Step 5: the mail server's files, in one command.
        dry_run = flask(config, *apply_args, "--dry-run")
        applied = flask(config, *apply_args, "--backup-dir", str(work / "backup"))
        time.sleep(1)
    return Adopted(server, config, apply_args, upgrade, dry_run, applied, sender, guide_files)


def test_mail_flows_before_during_and_after_the_operator_path(adopted):
    assert adopted.upgrade.returncode == 0, adopted.upgrade.stdout + adopted.upgrade.stderr
    dry = adopted.dry_run
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "/etc/postfix/pgsql-users.cf (after apply)" in dry.stdout and "u.active AND d.active" in dry.stdout
    assert guide_server.DB_PASSWORD not in dry.stdout  # masked in the diff
    applied = adopted.applied
    assert applied.returncode == 0, applied.stdout + applied.stderr
    out = applied.stdout
    series = adopted.server.series
    assert "installed /etc/postfix/pgsql-users.cf (640, group postfix)" in out
    assert "installed /etc/dovecot/conf.d/99-mail-portal.conf" in out
    assert "postfix check: no errors, no warnings" in out and f"doveconf -n (Dovecot {series}): no errors" in out
    assert "Postfix routes the alias info@guide.example: ok" in out
    assert "Dovecot finds the mailbox" in out and "reloaded Postfix" in out and "reloaded Dovecot" in out
    # doctor is the last step, and every check of it passes on the adopted server.
    doctor = [line for line in out.splitlines() if line.startswith("doctor: ") and "fix:" not in line]
    assert doctor and all(line.startswith(("doctor: ok", "doctor: skip")) for line in doctor), "\n".join(doctor)
    assert "doctor: ok    user names" in out and "doctor: ok    quota plugins" in out
    assert "doctor: ok    mail filters" in out
    # The guide's own files went to the backup first.
    assert "the files as they were are kept in" in out
    # During steps 3 to 5: every message accepted, delivered, none bounced or deferred.
    sender = adopted.sender
    assert len(sender.sent) >= 10 and not sender.refused, sender.refused
    for subject in sender.sent:
        wait_for_maildir_message(MAILDIRS / "ben", subject)
    statuses = {re.search(r"status=(\w+)", line).group(1) for line in mail_log_lines("ben@guide.example")}
    assert statuses == {"sent"}
    # After: the alias still routes, and the guide's users sign in with their guide passwords (bare hashes).
    send_mail(SMTP, "info@guide.example", "after the portal")
    wait_for_maildir_message(MAILDIRS / "anna", "after the portal")
    for address, password in adopted.server.mailboxes.items():
        imap_login(IMAP, address, password).logout()


def test_after_apply_a_disabled_mailbox_stops(adopted):
    address, password = "carl@guide.example", adopted.server.mailboxes["carl@guide.example"]
    send_mail(SMTP, address, "before the disable")
    wait_for_maildir_message(MAILDIRS / "carl", "before the disable")
    session = imap_login(IMAP, address, password)
    result = flask(adopted.config, "mailbox", "disable", address, "--reason", "left the company")
    assert result.returncode == 0, result.stdout + result.stderr
    # Refused at RCPT time (check_recipient_access), its open session ended (doveadm), no new sign-in.
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send_mail(SMTP, address, "after the disable")
    try:
        with pytest.raises((imapclient.exceptions.IMAPClientError, OSError)):
            session.noop()
    finally:
        with contextlib.suppress(OSError):
            session.shutdown()
    with pytest.raises(imapclient.exceptions.LoginError):
        imap_login(IMAP, address, password)
    result = flask(adopted.config, "mailbox", "enable", address)
    assert result.returncode == 0, result.stdout + result.stderr
    send_mail(SMTP, address, "after the enable")
    wait_for_maildir_message(MAILDIRS / "carl", "after the enable")


def test_after_apply_quota_is_enforced(adopted):
    address = "anna@guide.example"
    result = flask(adopted.config, "mailbox", "set-quota", address, "1 MB")
    assert result.returncode == 0, result.stdout + result.stderr
    send_mail(SMTP, address, "too big", body="x" * 1_500_000)
    deadline = time.monotonic() + 20
    while not any("status=bounced" in line for line in mail_log_lines(address)) and time.monotonic() < deadline:
        time.sleep(0.2)
    bounced = [line for line in mail_log_lines(address) if "status=bounced" in line]
    assert len(bounced) == 1 and re.search(r"552 5\.2\.2", bounced[0]), bounced
    # A small message still fits, and Dovecot copied the usage into the portal's table for the pages.
    send_mail(SMTP, address, "small enough")
    wait_for_maildir_message(MAILDIRS / "anna", "small enough")
    usage = guide_server.psql("SELECT bytes > 0 AND messages >= 3 FROM portal_quota_usage"
                              " WHERE email = 'anna@guide.example'", database="mailserver")
    assert usage == "t"


def test_a_second_apply_changes_nothing(adopted, tmp_path):
    before = file_fingerprints(*CONFIG_DIRS)
    assert before != adopted.guide_files  # the first apply did change the guide's files
    again = flask(adopted.config, *adopted.apply_args, "--backup-dir", str(tmp_path / "again"))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing to change" in again.stdout and "reloaded" not in again.stdout
    assert file_fingerprints(*CONFIG_DIRS) == before and not (tmp_path / "again").exists()


def test_a_failed_apply_puts_the_server_back_exactly(adopted, tmp_path):
    before = file_fingerprints(*CONFIG_DIRS)
    effective = (subprocess.run(["postconf", "-n"], capture_output=True, text=True, check=True).stdout,
                 subprocess.run(["doveconf", "-n"], capture_output=True, text=True, check=True).stdout)
    # An invalid value: a mail role password PostgreSQL refuses. The files install, check and reload;
    # the probe of the maps then fails, and apply must put everything back.
    broken = adopted.server.mail_database_url.replace(guide_server.DB_PASSWORD, "not-the-password")
    failed = flask(adopted.config, "mailserver", "apply", "--database-url", broken,
                   "--backup-dir", str(tmp_path / "failed"))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "reloaded Postfix" in failed.stdout and "FAILED: Postfix finds the mailbox" in failed.stdout
    assert "apply failed, and every file is back as it was" in failed.stderr
    assert "not-the-password" not in failed.stdout + failed.stderr
    assert file_fingerprints(*CONFIG_DIRS) == before
    assert (subprocess.run(["postconf", "-n"], capture_output=True, text=True, check=True).stdout,
            subprocess.run(["doveconf", "-n"], capture_output=True, text=True, check=True).stdout) == effective
    # And the server works as before: mail is delivered, the guide's users sign in.
    send_mail(SMTP, "ben@guide.example", "after the failed apply")
    wait_for_maildir_message(MAILDIRS / "ben", "after the failed apply")
    imap_login(IMAP, "ben@guide.example", adopted.server.mailboxes["ben@guide.example"]).logout()
