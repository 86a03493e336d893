"""The eight sequences of the mail-safety issue: each refused with a clear message and nothing written.

Everything here runs against the real stack: Postfix's real alias map answers
who receives an address, Dovecot's real IMAP answers which password works.
"""

from __future__ import annotations

import subprocess

import pytest
from imapclient.exceptions import LoginError
from psycopg import sql

from portal.queries import audit
from tests.conftest import csrf_token
from tests.conftest import make_client
from tests.conftest import new_client_ip
from tests.conftest import sign_in
from tests.mail import imap_login
from tests.mail import make_mailbox
from tests.mail import send_mail
from tests.mail import wait_for_maildir_message

# Touches Dovecot or Postfix: scripts/test runs it on the other Debian release too.
pytestmark = pytest.mark.mail_server

PASSWORD = "mail safety test password 9"
NEW = "a brand new password for anna 2026"


def postmap(mail_stack, key: str) -> str:
    """What Postfix's shipped alias map answers for ``key`` ("" for nothing)."""
    table = mail_stack.postfix_dir / "pgsql-aliases.cf"
    result = subprocess.run(["postmap", "-c", str(mail_stack.postfix_dir), "-q", key, f"pgsql:{table}"],
                            capture_output=True, text=True, timeout=10)
    return result.stdout.strip()


def snapshot(db) -> dict:
    """Every row of the tables a refused action must not touch."""
    tables = ("virtual_users", "virtual_aliases", "portal_roles", "portal_audit_log", "portal_mailbox_removals")
    return {t: db.execute(sql.SQL("SELECT * FROM {} ORDER BY 1").format(sql.Identifier(t))).fetchall()
            for t in tables}


def signed_in(app, address: str, password: str = PASSWORD):
    client = make_client(app)
    response = sign_in(client, address, password)
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    return client


def post(client, url: str, form_page: str | None = None, **data):
    return client.post(url, data={"csrf_token": csrf_token(client, form_page or url), **data})


def grant(app, *args):
    result = app.test_cli_runner().invoke(args=["admin", "grant", *args])
    assert result.exit_code == 0, result.output


@pytest.fixture
def team(app, db):
    """example.com with alice, bob (to be deleted), a domain admin and a superadmin elsewhere."""
    for address in ("alice@example.com", "bob@example.com", "boss@example.com", "root@hq.example"):
        make_mailbox(db, address, PASSWORD)
    grant(app, "domain-admin", "boss@example.com", "example.com")
    grant(app, "superadmin", "root@hq.example")
    return app


# 1. A deleted colleague's address cannot be claimed while its mail is kept.

def test_a_deleted_address_cannot_be_claimed_during_its_grace_period(team, db, mail_stack):
    boss = signed_in(team, "boss@example.com")
    url = "/admin/domains/example.com/mailboxes/bob@example.com/delete"
    assert post(boss, url, confirm="bob@example.com").status_code == 302
    before = snapshot(db)

    alice = signed_in(team, "alice@example.com")
    response = post(alice, "/account/aliases", "/account/forwarding", local_part="bob")
    assert response.status_code == 400
    assert "belonged to a deleted mailbox" in response.get_data(as_text=True)
    response = post(boss, "/admin/domains/example.com/aliases/new", local_part="bob",
                    destinations="boss@example.com")
    assert response.status_code == 409
    assert "belonged to a deleted mailbox" in response.get_data(as_text=True)
    assert snapshot(db) == before
    assert postmap(mail_stack, "bob@example.com") == ""
    with pytest.raises(Exception, match="550"):
        send_mail(mail_stack.smtp_port, "bob@example.com", "for bob, who left")


# 2. A "/" in a local part never names another mailbox's folder.

@pytest.mark.parametrize("address", ["alice/@example.com", "/@example.com", "..@example.com", "o'neil@example.com",
                                     "bob+tag@example.com"])
def test_unsafe_mailbox_names_are_refused_on_every_path(team, db, address, tmp_path):
    before = snapshot(db)
    runner = team.test_cli_runner()
    result = runner.invoke(args=["mailbox", "add", address, "--generate"])
    assert result.exit_code != 0
    assert "letters, digits and . _ -" in result.output or "is not an e-mail address" in result.output

    boss = signed_in(team, "boss@example.com")
    response = post(boss, "/admin/domains/example.com/mailboxes/new", local_part=address.rpartition("@")[0],
                    generate="y")
    assert response.status_code == 400
    assert "Use letters, digits and . _ - only" in response.get_data(as_text=True)

    csv = tmp_path / "boxes.csv"
    csv.write_text(f'address,password_hash\n"{address}",{{SHA512-CRYPT}}$6$abcdefgh$' + "A" * 86 + "\n")
    result = runner.invoke(args=["import", "mailboxes", str(csv)])
    assert result.exit_code != 0 and "line 2" in result.output
    assert snapshot(db) == before


def test_purge_removes_only_the_deleted_mailboxs_own_folder(team, db, mail_stack):
    # An adopted mailbox with an unsafe name (created before this rule, straight in SQL).
    db.execute("INSERT INTO virtual_users (domain_id, email, password) SELECT domain_id, 'alice/@example.com',"
               " password FROM virtual_users WHERE email = 'alice@example.com'")
    send_mail(mail_stack.smtp_port, "alice@example.com", "alice keeps this")
    alice_dir = mail_stack.mail_root / "example.com" / "alice"
    wait_for_maildir_message(alice_dir, "alice keeps this")
    runner = team.test_cli_runner()
    assert runner.invoke(args=["mailbox", "delete", "alice/@example.com", "--yes"]).exit_code == 0
    result = runner.invoke(args=["mailbox", "purge", "--address", "alice/@example.com"])
    assert result.exit_code != 0 and "not purged alice/@example.com" in result.output
    assert alice_dir.is_dir() and any((alice_dir / "new").iterdir())
    pending = db.execute("SELECT purged_at FROM portal_mailbox_removals WHERE email = 'alice/@example.com'").fetchone()
    assert pending["purged_at"] is None
    upgrade = runner.invoke(args=["db", "upgrade"])
    assert upgrade.exit_code == 0


def test_db_upgrade_names_adopted_unsafe_mailboxes(team, db):
    db.execute("INSERT INTO virtual_users (domain_id, email, password) SELECT domain_id, 'x/y@example.com',"
               " password FROM virtual_users WHERE email = 'alice@example.com'")
    result = team.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0
    assert "x/y@example.com" in result.output and "warning" in result.output


# 3. A password someone else has seen works only for the portal's forced change.

def test_a_helpdesk_reset_password_is_portal_only_until_the_owner_changes_it(team, db, mail_stack):
    grant(team, "helpdesk", "bob@example.com", "example.com")
    helper = signed_in(team, "bob@example.com")
    page = post(helper, "/helpdesk/mailboxes/alice@example.com/reset", "/helpdesk/mailboxes/alice@example.com")
    assert page.status_code == 200
    temporary = page.get_data(as_text=True).split('<p class="secret"><code>')[1].split("<")[0]
    for password in (temporary, PASSWORD):  # neither the one-time nor the old password reaches mail
        with pytest.raises(LoginError):
            imap_login(mail_stack.imap_port, "alice@example.com", password, client_ip=new_client_ip())
    alice = make_client(team)
    response = sign_in(alice, "alice@example.com", temporary)
    assert response.status_code == 302 and response.headers["Location"].endswith("/account/password")
    response = post(alice, "/account/password", current_password=temporary, new_password=NEW, confirm_password=NEW)
    assert response.status_code == 302
    imap_login(mail_stack.imap_port, "alice@example.com", NEW, client_ip=new_client_ip()).logout()
    with pytest.raises(LoginError):
        imap_login(mail_stack.imap_port, "alice@example.com", temporary, client_ip=new_client_ip())


def test_an_admin_set_password_is_portal_only_unless_marked_final(team, db, mail_stack):
    boss = signed_in(team, "boss@example.com")
    url = "/admin/domains/example.com/mailboxes/alice@example.com"
    fields = {"quota": "", "active": "y", "display_name": "", "new_password": NEW, "confirm_password": NEW}
    version = db.execute("SELECT updated_at FROM virtual_users WHERE email = 'alice@example.com'").fetchone()
    assert post(boss, url, version=version["updated_at"].isoformat(), **fields).status_code == 302
    with pytest.raises(LoginError):
        imap_login(mail_stack.imap_port, "alice@example.com", NEW, client_ip=new_client_ip())
    # While the admin knows it, no role can be given to the mailbox.
    result = team.test_cli_runner().invoke(args=["admin", "grant", "helpdesk", "alice@example.com"])
    assert result.exit_code != 0 and "one-time password" in result.output

    version = db.execute("SELECT updated_at FROM virtual_users WHERE email = 'alice@example.com'").fetchone()
    assert post(boss, url, version=version["updated_at"].isoformat(), final="y", **fields).status_code == 302
    imap_login(mail_stack.imap_port, "alice@example.com", NEW, client_ip=new_client_ip()).logout()


# 4. Reserved addresses are an administrator's on every path.

def test_reserved_addresses_stay_with_the_superadmin(team, db, mail_stack):
    root = signed_in(team, "root@hq.example")
    assert post(root, "/admin/domains/example.com/aliases/new", local_part="postmaster",
                destinations="root@hq.example").status_code == 302
    before = snapshot(db)
    boss = signed_in(team, "boss@example.com")
    response = post(boss, "/admin/domains/example.com/mailboxes/new", local_part="abuse", generate="y")
    assert response.status_code == 409 and "is reserved" in response.get_data(as_text=True)
    assert boss.get("/admin/domains/example.com/aliases/postmaster@example.com").status_code == 404
    response = post(boss, "/admin/domains/example.com/aliases/postmaster@example.com",
                    "/admin/domains/example.com/aliases", destinations="boss@example.com")
    assert response.status_code == 404
    response = post(boss, "/admin/domains/example.com/aliases/new", catch_all="y", destinations="boss@example.com")
    assert response.status_code == 403 and "Only a superadmin can set the catch-all" in response.get_data(as_text=True)
    assert snapshot(db) == before
    assert postmap(mail_stack, "postmaster@example.com") == "root@hq.example"
    assert postmap(mail_stack, "@example.com") == ""


# 5. A domain admin cannot take anyone's personal address.

def test_a_domain_admin_cannot_take_a_personal_address(team, db, mail_stack):
    db.execute("UPDATE virtual_domains SET allow_personal_aliases = true")
    make_mailbox(db, "chief@example.com", PASSWORD)
    grant(team, "superadmin", "chief@example.com")
    chief = signed_in(team, "chief@example.com")
    assert post(chief, "/account/aliases", "/account/forwarding", local_part="chief.private").status_code == 302
    before = snapshot(db)
    boss = signed_in(team, "boss@example.com")
    url = "/admin/domains/example.com/aliases/chief.private@example.com"
    assert boss.get(url).status_code == 404
    response = post(boss, url, "/admin/domains/example.com/aliases",
                    destinations="chief@example.com\nboss@example.com")
    assert response.status_code == 404
    response = post(boss, url + "/delete", "/admin/domains/example.com/aliases")
    assert response.status_code == 403  # the rule's answer, under the lock
    assert "is a personal address" in response.get_data(as_text=True)
    assert snapshot(db) == before
    assert postmap(mail_stack, "chief.private@example.com") == "chief@example.com"


# 6. One's own password changes only where the current password is asked for.

def test_an_admin_cannot_change_their_own_password_on_the_admin_pages(team, db, mail_stack):
    before = snapshot(db)
    boss = signed_in(team, "boss@example.com")
    url = "/admin/domains/example.com/mailboxes/boss@example.com"
    version = db.execute("SELECT updated_at FROM virtual_users WHERE email = 'boss@example.com'").fetchone()
    response = post(boss, url, version=version["updated_at"].isoformat(), quota="", active="y", display_name="",
                    new_password=NEW, confirm_password=NEW, final="y")
    assert response.status_code == 403
    assert "on your account page" in response.get_data(as_text=True)
    response = post(boss, url, version=version["updated_at"].isoformat(), quota="", display_name="")
    assert response.status_code == 403  # nor disable it
    assert snapshot(db) == before
    imap_login(mail_stack.imap_port, "boss@example.com", PASSWORD, client_ip=new_client_ip()).logout()


# 7. Role checks are asked again under the row lock, inside the rule.

def test_the_rule_refuses_what_the_view_allowed_a_moment_before(team, db):
    """The page was opened while alice was an ordinary mailbox; she became an admin before the save."""
    from portal.access import Actor
    from portal.queries import mailboxes
    from portal.rules import mailboxes as mailbox_rules

    boss_id = db.execute("SELECT id FROM virtual_users WHERE email = 'boss@example.com'").fetchone()["id"]
    alice = mailboxes.get_mailbox(db, "alice@example.com")
    grant(team, "domain-admin", "alice@example.com", "example.com")
    before = snapshot(db)
    with team.app_context(), pytest.raises(mailbox_rules.MailboxRefused, match="Only a superadmin"):
        mailbox_rules.update_mailbox(db, Actor("boss@example.com", "198.51.100.1", boss_id), mailbox=alice,
                                     quota_bytes=0, active=False, password_hash=None)
    assert snapshot(db) == before


# 8. Effects across domains are told to those domains, and shown only to them.

def test_a_deletion_is_recorded_in_every_domain_it_touches(team, db):
    make_mailbox(db, "ops@other.example", PASSWORD)
    make_mailbox(db, "admin2@other.example", PASSWORD)
    grant(team, "domain-admin", "admin2@other.example", "other.example")
    db.execute("INSERT INTO virtual_aliases (domain_id, source, destination) SELECT id, 'team@other.example',"
               " 'bob@example.com' FROM virtual_domains WHERE name = 'other.example'")
    boss = signed_in(team, "boss@example.com")
    url = "/admin/domains/example.com/mailboxes/bob@example.com/delete"
    assert "team@other.example" not in boss.get(url).get_data(as_text=True)
    assert post(boss, url, confirm="bob@example.com").status_code == 302
    rows = db.execute("SELECT actor, action, target, domain, summary FROM portal_audit_log"
                      " WHERE action = 'alias.destination_removed'").fetchall()
    assert [(r["actor"], r["target"], r["domain"], r["summary"]) for r in rows] == [
        ("boss@example.com", "bob@example.com", "other.example", {"aliases": ["team@other.example"]})]
    other_admin = signed_in(team, "admin2@other.example")
    assert "team@other.example" in other_admin.get("/admin/audit").get_data(as_text=True)


def test_a_recreated_domain_does_not_show_the_former_tenants_history(team, db):
    runner = team.test_cli_runner()
    make_mailbox(db, "old@gone.example", PASSWORD)
    assert runner.invoke(args=["domain", "delete", "gone.example", "--yes"]).exit_code == 0
    with db.transaction():
        audit.record(db, actor="cli", actor_role="cli", client_addr=None, action="mailbox.create",
                     target="secret-old-tenant@gone.example", domain="gone.example", summary={})
    db.execute("UPDATE portal_audit_log SET at = now() - interval '1 hour'"
               " WHERE target = 'secret-old-tenant@gone.example'")
    assert runner.invoke(args=["domain", "add", "gone.example"]).exit_code == 0
    make_mailbox(db, "new@gone.example", PASSWORD)
    grant(team, "domain-admin", "new@gone.example", "gone.example")
    new_admin = signed_in(team, "new@gone.example")
    page = new_admin.get("/admin/audit").get_data(as_text=True)
    assert "secret-old-tenant" not in page
    assert "new@gone.example" in page  # the new tenant's own history is there
