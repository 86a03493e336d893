"""The domain, mailbox and alias commands: the same rules and audit rows as the pages, proven over IMAP and SMTP."""

from __future__ import annotations

import pytest
from imapclient.exceptions import LoginError

from tests.conftest import new_client_ip
from tests.mail import imap_login
from tests.mail import make_mailbox
from tests.mail import send_mail
from tests.mail import wait_for_maildir_message

# Touches Dovecot or Postfix: scripts/test runs it on the other Debian release too.
pytestmark = pytest.mark.mail_server

PASSWORD = "a long enough test password 14"
NEW = "copper meadow lantern 77 orbit"


def run(app, *args, input=None):
    return app.test_cli_runner().invoke(args=list(args), input=input)


def audit_actions(db) -> list[tuple]:
    return [(r["actor"], r["action"], r["target"]) for r in db.execute(
        "SELECT actor, action, target FROM portal_audit_log ORDER BY id").fetchall()]


def imap_accepts(mail_stack, address, password) -> bool:
    try:
        imap_login(mail_stack.imap_port, address, password, client_ip=new_client_ip()).logout()
    except LoginError:
        return False
    return True


def test_domain_mailbox_alias_lifecycle(app, db, mail_stack):
    result = run(app, "domain", "add", "Shop.Example", "--max-mailboxes", "2", "--default-quota", "1 GB")
    assert result.exit_code == 0, result.output
    assert "created shop.example" in result.output
    assert "shop.example\tactive\t0\t0" in run(app, "domain", "list").output

    result = run(app, "mailbox", "add", "Anna@shop.example", "--name", "Anna Berg", "--password-stdin", "--final",
                 input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert imap_accepts(mail_stack, "anna@shop.example", PASSWORD)

    result = run(app, "mailbox", "add", "bob@shop.example", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output  # the hidden prompt, twice
    assert "only signs in to the portal" in result.output  # not --final: the operator knows it, mail does not
    assert not imap_accepts(mail_stack, "bob@shop.example", PASSWORD)
    result = run(app, "mailbox", "add", "carl@shop.example", "--generate")
    assert result.exit_code != 0 and "already has its limit of 2 mailboxes" in result.output

    listing = run(app, "mailbox", "list", "shop.example").output.splitlines()
    assert listing == ["anna@shop.example\tactive\t1 GB\t0 B\tAnna Berg", "bob@shop.example\tactive\t1 GB\t0 B\t"]

    result = run(app, "alias", "add", "sales@shop.example", "anna@shop.example", "bob@shop.example")
    assert result.exit_code == 0, result.output
    send_mail(mail_stack.smtp_port, "sales@shop.example", "to sales via cli")
    wait_for_maildir_message(mail_stack.mail_root / "shop.example" / "bob", "to sales via cli")
    assert "sales@shop.example\talias\tanna@shop.example,bob@shop.example" in run(
        app, "alias", "list", "shop.example").output
    result = run(app, "alias", "add", "sales@shop.example", "anna@shop.example")
    assert result.exit_code != 0 and "add --replace" in result.output
    assert run(app, "alias", "add", "sales@shop.example", "anna@shop.example", "--replace").exit_code == 0
    assert run(app, "alias", "delete", "sales@shop.example").exit_code == 0

    assert run(app, "domain", "disable", "shop.example").exit_code == 0
    assert not imap_accepts(mail_stack, "anna@shop.example", PASSWORD)
    assert run(app, "domain", "enable", "shop.example").exit_code == 0
    assert imap_accepts(mail_stack, "anna@shop.example", PASSWORD)

    result = run(app, "mailbox", "delete", "bob@shop.example", input="bob@shop.example\n")
    assert result.exit_code == 0, result.output
    result = run(app, "domain", "delete", "shop.example", "--yes")
    assert result.exit_code == 0 and "deleted shop.example with 1 mailboxes" in result.output

    assert audit_actions(db) == [
        ("cli", "domain.create", "shop.example"), ("cli", "mailbox.create", "anna@shop.example"),
        ("cli", "mailbox.create", "bob@shop.example"), ("cli", "alias.create", "sales@shop.example"),
        ("cli", "alias.update", "sales@shop.example"), ("cli", "alias.delete", "sales@shop.example"),
        ("cli", "domain.update", "shop.example"), ("cli", "domain.update", "shop.example"),
        ("cli", "mailbox.delete", "bob@shop.example"), ("cli", "domain.delete", "shop.example"),
    ]


def test_passwd_disable_enable(app, db, mail_stack):
    make_mailbox(db, "dora@cli.example", PASSWORD)
    result = run(app, "mailbox", "passwd", "dora@cli.example", "--password-stdin", input=NEW + "\n")
    assert result.exit_code == 0, result.output
    assert not imap_accepts(mail_stack, "dora@cli.example", NEW)  # the operator knows it: the portal's, once
    assert not imap_accepts(mail_stack, "dora@cli.example", PASSWORD)
    row = db.execute("SELECT password_must_change FROM virtual_users WHERE email = 'dora@cli.example'").fetchone()
    assert row["password_must_change"] is True

    result = run(app, "mailbox", "passwd", "dora@cli.example", "--generate", "--final")
    generated = result.output.rsplit("password (shown once): ", 1)[1].strip()
    assert imap_accepts(mail_stack, "dora@cli.example", generated)

    result = run(app, "mailbox", "disable", "dora@cli.example", "--reason", "left")
    assert result.exit_code == 0 and not imap_accepts(mail_stack, "dora@cli.example", generated)
    assert run(app, "mailbox", "enable", "dora@cli.example").exit_code == 0
    assert imap_accepts(mail_stack, "dora@cli.example", generated)
    assert [a for _, a, _ in audit_actions(db)] == ["mailbox.update", "mailbox.update", "mailbox.disable",
                                                      "mailbox.enable"]
    assert NEW not in str(db.execute("SELECT * FROM portal_audit_log").fetchall())


STATE = ("SELECT (SELECT count(*) FROM virtual_users) AS u, (SELECT count(*) FROM virtual_domains) AS d,"
         " (SELECT count(*) FROM virtual_aliases) AS a,"
         " (SELECT string_agg(password || active::text, ',') FROM virtual_users) AS p")


@pytest.mark.parametrize(("args", "input", "message"), [
    (("domain", "add", "bad..example"), None, "This domain name"),
    (("domain", "add", "x.example", "--default-quota", "3 GB", "--max-quota", "1 GB"), None,
     "The default size limit cannot be above the largest one."),
    (("mailbox", "add", "a@nowhere.example", "--generate"), None, "there is no domain nowhere.example"),
    (("mailbox", "add", "weak@cli.example", "--password-stdin"), "short\n", "the password is refused"),
    (("mailbox", "add", "new@cli.example", "--password-stdin", "--generate"), None, "either --password-stdin"),
    (("mailbox", "add", "new@cli.example"), f"{PASSWORD}\nsomething else\n", "Error"),
    (("mailbox", "disable", "dora@cli.example", "--reason", " "), None, "give a reason"),
    (("mailbox", "delete", "dora@cli.example"), "wrong@cli.example\n", "did not match; nothing deleted"),
    (("alias", "add", "dora@cli.example", "x@remote.example"), None, "is already in use"),
    (("alias", "add", "loop@cli.example", "loop@cli.example"), None, "cannot deliver to itself"),
    (("alias", "add", "list@cli.example", "not an address"), None, "is not an e-mail address"),
    (("alias", "delete", "none@cli.example"), None, "is not an alias of cli.example"),
    (("domain", "delete", "cli.example"), "nope\n", "did not match"),
])
def test_refusals_change_nothing(app, db, args, input, message):
    make_mailbox(db, "dora@cli.example", PASSWORD)
    db.execute("DELETE FROM portal_audit_log")
    before = db.execute(STATE).fetchone()
    result = run(app, *args, input=input)
    assert result.exit_code != 0
    assert message.lower() in result.output.lower(), result.output
    assert "Traceback" not in result.output
    after = db.execute(STATE).fetchone()
    assert after == before and audit_actions(db) == []


def test_passwords_are_never_arguments(app):
    for command in (("mailbox", "add"), ("mailbox", "passwd")):
        result = run(app, *command, "--help")
        assert "--password-stdin" in result.output and "--password " not in result.output
        result = run(app, *command, "x@y.example", "--password", "secret")
        assert result.exit_code != 0 and "No such option" in result.output


def test_the_last_superadmins_domain_is_neither_disabled_nor_deleted(app, db):
    make_mailbox(db, "root@top.example", PASSWORD)
    assert run(app, "admin", "grant", "superadmin", "root@top.example").exit_code == 0
    for args in (("domain", "disable", "top.example"), ("domain", "delete", "top.example", "--yes")):
        result = run(app, *args)
        assert result.exit_code != 0 and "holds the last superadmin who can sign in" in result.output
    assert db.execute("SELECT active FROM virtual_domains WHERE name = 'top.example'").fetchone()["active"]
    make_mailbox(db, "other@else.example", PASSWORD)
    assert run(app, "admin", "grant", "superadmin", "other@else.example").exit_code == 0
    assert run(app, "domain", "disable", "top.example").exit_code == 0
