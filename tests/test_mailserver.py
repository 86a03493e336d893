"""flask mailserver apply against the test stack's running Postfix and Dovecot: mail keeps flowing, all or nothing."""

from __future__ import annotations

import os
import re
import smtplib
import time

import pytest
import stack

from portal.mailserver import edit_main_cf
from tests.mail import SteadySender
from tests.mail import file_fingerprints
from tests.mail import make_mailbox
from tests.mail import send_mail
from tests.mail import wait_for_maildir_message

# Touches Dovecot or Postfix: scripts/test runs it on the other Debian release too.
pytestmark = pytest.mark.mail_server

PASSWORD = "a long enough test password 17"
MAPS = {"virtual_mailbox_domains": "pgsql:/etc/postfix/pgsql-domains.cf",
        "virtual_mailbox_maps": "pgsql:/etc/postfix/pgsql-users.cf",
        "virtual_alias_maps": "pgsql:/etc/postfix/pgsql-aliases.cf"}
CHECK = "check_recipient_access pgsql:/etc/postfix/pgsql-recipient-access.cf"
# The guide's Postfix user map query (../shared/seed): it ignores the active flag.
GUIDE_USERS_QUERY = "query = SELECT email FROM virtual_users WHERE email='%s'\n"
# The deployment guide's main.cf lines (../shared/seed), as a guide-built server has them.
GUIDE_MAIN_CF = """smtpd_banner = $myhostname ESMTP
virtual_mailbox_domains = pgsql:/etc/postfix/pgsql-domains.cf
virtual_mailbox_maps = pgsql:/etc/postfix/pgsql-users.cf
virtual_alias_maps = pgsql:/etc/postfix/pgsql-aliases.cf
virtual_transport = lmtp:unix:private/dovecot-lmtp
"""


def test_main_cf_keeps_every_line_it_does_not_own():
    edited = edit_main_cf(GUIDE_MAIN_CF, MAPS, CHECK)
    assert edited.startswith(GUIDE_MAIN_CF)  # the guide's lines, untouched, in their order
    assert edited.endswith(f"smtpd_recipient_restrictions = {CHECK}\n")  # only the lookup: relaying is unchanged
    assert edit_main_cf(edited, MAPS, CHECK) == edited


def test_main_cf_adds_the_lookup_to_restrictions_it_finds():
    text = ("smtpd_recipient_restrictions = permit_mynetworks,\n    reject_unauth_destination\n"
            "virtual_alias_maps = hash:/etc/postfix/virtual\nmyhostname = mx.example\n")
    edited = edit_main_cf(text, MAPS, CHECK)
    assert edited.splitlines() == [
        f"smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination, {CHECK}",
        "virtual_alias_maps = pgsql:/etc/postfix/pgsql-aliases.cf", "myhostname = mx.example",
        "# Mail portal (flask --app app mailserver apply): the lines it owns.",
        "virtual_mailbox_domains = pgsql:/etc/postfix/pgsql-domains.cf",
        "virtual_mailbox_maps = pgsql:/etc/postfix/pgsql-users.cf"]


def fingerprint(mail_stack) -> dict[str, tuple[str, int, int, int]]:
    """Every file of the instance's Postfix and Dovecot configuration: hash, mode, owner, group."""
    return file_fingerprints(mail_stack.postfix_dir, mail_stack.dovecot_conf.parent, skip=("/run/", "/state/"))


@pytest.fixture
def operator(app_factory, db, mail_stack):
    """An app as an operator runs it, and the arguments that describe the test stack's server."""
    app = app_factory(TESTING=False, SECRET_KEY=os.urandom(24).hex(), COOKIE_SECURE=True)
    reader = stack.database_url(mail_stack.db_name, stack.DB_MAIL_READER)
    args = ["mailserver", "apply", "--database-url", reader, "--postfix-dir", str(mail_stack.postfix_dir),
            "--dovecot-dir", str(mail_stack.dovecot_conf.parent), "--dovecot-config", str(mail_stack.dovecot_conf),
            "--portal-networks", "127.0.0.0/8 ::1", "--postfix-auth-socket", str(mail_stack.sasl_socket)]
    yield app, args
    # Whatever a test did, the stack's own files again for the next test.
    stack.render_postfix(mail_stack)
    stack.render_dovecot(mail_stack)
    stack.start_postfix(mail_stack, reload=True)
    stack.renew_database_clients(mail_stack)


def test_on_the_stack_apply_changes_nothing(operator, mail_stack, tmp_path):
    app, args = operator
    before = fingerprint(mail_stack)
    result = app.test_cli_runner().invoke(args=[*args, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "nothing to change" in result.output
    result = app.test_cli_runner().invoke(args=[*args, "--backup-dir", str(tmp_path / "backup")])
    assert result.exit_code == 0 and "nothing to change" in result.output
    assert fingerprint(mail_stack) == before and not (tmp_path / "backup").exists()


def test_apply_on_a_guide_built_server_keeps_mail_flowing(operator, db, mail_stack, tmp_path):
    app, args = operator
    make_mailbox(db, "steady@flow.example", PASSWORD)
    make_mailbox(db, "off@flow.example", PASSWORD)
    db.execute("UPDATE virtual_users SET active = false WHERE email = 'off@flow.example'")
    db.execute("INSERT INTO virtual_aliases (domain_id, source, destination) SELECT id, 'team@flow.example',"
               " 'steady@flow.example' FROM virtual_domains WHERE name = 'flow.example'")
    # The guide's Postfix user map: it ignores the active flag, so the disabled mailbox still receives.
    users_map = mail_stack.postfix_dir / "pgsql-users.cf"
    guide = users_map.read_text().split("query =")[0] + GUIDE_USERS_QUERY
    users_map.write_text(guide)
    # ...and no recipient check of its own in main.cf.
    main_cf = mail_stack.postfix_dir / "main.cf"
    restrictions = re.compile(r"^smtpd_recipient_restrictions = .*\n(?:[ \t]+.*\n)*", re.M)
    main_cf.write_text(restrictions.sub("smtpd_recipient_restrictions = reject_unauth_destination\n",
                                        main_cf.read_text()))
    stack.start_postfix(mail_stack, reload=True)
    send_mail(mail_stack.smtp_port, "off@flow.example", "before apply, to the disabled one")

    dry = app.test_cli_runner().invoke(args=[*args, "--dry-run"])
    assert dry.exit_code == 0 and str(users_map) in dry.output and "u.active AND d.active" in dry.output
    assert "+smtpd_recipient_restrictions = reject_unauth_destination, check_recipient_access pgsql:" in dry.output
    assert stack.db_context(mail_stack.db_name)["db_password"] not in dry.output  # masked in the diff
    assert users_map.read_text() == guide  # a dry run changes nothing

    maildir = mail_stack.mail_root / "flow.example" / "steady"
    with SteadySender(mail_stack.smtp_port, "team@flow.example", "during apply") as sender:
        time.sleep(1)
        result = app.test_cli_runner().invoke(args=[*args, "--backup-dir", str(tmp_path / "backup")])
        time.sleep(1)
    assert result.exit_code == 0, result.output
    assert f"installed {users_map}" in result.output and "postfix check: no errors, no warnings" in result.output
    assert "Postfix routes the alias team@flow.example: ok" in result.output
    assert "doctor: ok    disabled accounts" in result.output
    assert (tmp_path / "backup" / str(users_map).lstrip("/")).read_text() == guide
    assert sender.sent and not sender.refused, sender.refused
    for subject in sender.sent:  # nothing bounced or went missing while the files changed under Postfix
        wait_for_maildir_message(maildir, subject)
    # Now the disabled mailbox refuses mail at RCPT time.
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send_mail(mail_stack.smtp_port, "off@flow.example", "after apply, to the disabled one")

    again = app.test_cli_runner().invoke(args=[*args, "--backup-dir", str(tmp_path / "again")])
    assert again.exit_code == 0 and "nothing to change" in again.output


def test_a_failed_apply_puts_every_file_back(operator, db, mail_stack, tmp_path):
    app, args = operator
    make_mailbox(db, "steady@flow.example", PASSWORD)
    users_map = mail_stack.postfix_dir / "pgsql-users.cf"
    users_map.write_text(users_map.read_text().split("query =")[0] + GUIDE_USERS_QUERY)
    stack.start_postfix(mail_stack, reload=True)
    before = fingerprint(mail_stack)
    # An invalid value: a mail role password PostgreSQL refuses. Every check passes; the probe does not.
    reader = stack.database_url(mail_stack.db_name, stack.DB_MAIL_READER, password="not-the-password")
    broken = [*args]
    broken[broken.index("--database-url") + 1] = reader
    result = app.test_cli_runner().invoke(args=[*broken, "--backup-dir", str(tmp_path / "backup")])
    assert result.exit_code == 1
    assert "FAILED: Postfix finds the mailbox steady@flow.example" in result.output
    assert "apply failed, and every file is back as it was" in result.output
    assert "not-the-password" not in result.output
    assert fingerprint(mail_stack) == before
    send_mail(mail_stack.smtp_port, "steady@flow.example", "after the failed apply")
    wait_for_maildir_message(mail_stack.mail_root / "flow.example" / "steady", "after the failed apply")


def test_apply_refuses_where_dovecot_has_no_sieve_plugin_and_changes_nothing(operator, mail_stack, tmp_path):
    """The portal's 99-mail-portal.conf loads sieve for LMTP: without Pigeonhole every delivery would fail."""
    app, args = operator
    empty = tmp_path / "modules"
    empty.mkdir()
    config = tmp_path / "dovecot.conf"
    config.write_text(mail_stack.dovecot_conf.read_text() + f"\nmail_plugin_dir = {empty}\n")
    before = fingerprint(mail_stack)
    changed = [*args]
    changed[changed.index("--dovecot-config") + 1] = str(config)
    result = app.test_cli_runner().invoke(args=[*changed, "--backup-dir", str(tmp_path / "backup")])
    assert result.exit_code == 1
    assert "Dovecot's Sieve plugin is not installed here" in result.output
    assert "apt-get install dovecot-sieve" in result.output and "Nothing was changed." in result.output
    assert fingerprint(mail_stack) == before and not (tmp_path / "backup").exists()
