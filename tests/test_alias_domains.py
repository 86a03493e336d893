"""Alias domains: every kind of address delivered through the real Postfix and read over IMAP, and the rules."""

from __future__ import annotations

import smtplib

import pytest

from portal.access import Actor
from portal.queries import aliases as alias_queries
from portal.queries import domains as domain_queries
from portal.rules import addressing
from portal.rules import alias_domains as alias_domain_rules
from portal.rules import aliases as alias_rules
from portal.rules import domains as domain_rules
from portal.rules import forwarding as forwarding_rules
from portal.rules import mailboxes as mailbox_rules
from tests.conftest import csrf_token
from tests.conftest import grant_and_sign_in
from tests.mail import imap_login
from tests.mail import imap_subjects
from tests.mail import make_mailbox
from tests.mail import send_mail
from tests.mail import wait_for_maildir_message

# Touches Dovecot or Postfix: scripts/test runs it on the other Debian release too.
pytestmark = pytest.mark.mail_server

TARGET, LINKED = "mirror.example", "mirror.test"
ALICE, BOB = f"alice@{TARGET}", f"bob@{TARGET}"
PASSWORD = "a long enough test password 20"
CLI = Actor.command_line()


@pytest.fixture
def linked(db, mail_stack):
    """alice and bob in mirror.example, alice's personal address, a team alias, and mirror.test linked to it."""
    ids = {address: make_mailbox(db, address, PASSWORD) for address in (ALICE, BOB)}
    domain = domain_queries.get_domain_by_name(db, TARGET)
    alias_queries.add_personal_alias(db, domain["id"], f"shop.alice@{TARGET}", ALICE, ids[ALICE])
    save_alias(db, f"team@{TARGET}", [BOB], create=True)
    alias_domain_rules.create_alias_domain(db, CLI, name=LINKED, target=TARGET)
    return ids


def save_alias(db, source: str, destinations: list[str], create: bool = True) -> None:
    domain = domain_queries.get_domain(db, domain_queries.get_domain_by_name(db, TARGET)["id"])
    alias_rules.save_alias(db, CLI, domain=domain, source=source, destinations=destinations, create=create,
                           reserved=["postmaster"], delimiter="+")


def maildir(mail_stack, address: str):
    local, _, domain = address.partition("@")
    return mail_stack.mail_root / domain / local


def delivered(mail_stack, to: str, into: str, subject: str) -> None:
    send_mail(mail_stack.smtp_port, to, subject)
    wait_for_maildir_message(maildir(mail_stack, into), subject)


def refused(mail_stack, to: str) -> str:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
        send_mail(mail_stack.smtp_port, to, "refused")
    code, reason = caught.value.recipients[to]
    assert 500 <= code < 600
    return reason.decode()


def test_each_kind_of_address_on_the_alias_domain_lands_in_the_right_maildir(mail_stack, linked):
    delivered(mail_stack, f"alice@{LINKED}", ALICE, "to the mailbox through the alias domain")
    delivered(mail_stack, f"shop.alice@{LINKED}", ALICE, "to the personal address through the alias domain")
    delivered(mail_stack, f"team@{LINKED}", BOB, "to the alias through the alias domain")
    client = imap_login(mail_stack.imap_port, ALICE, PASSWORD)
    try:
        subjects = imap_subjects(client)
    finally:
        client.logout()
    assert {"to the mailbox through the alias domain", "to the personal address through the alias domain"} <= set(
        subjects)
    # An address that exists nowhere is refused during the SMTP dialogue: nothing bounces later.
    assert "User unknown" in refused(mail_stack, f"nobody@{LINKED}")


def test_the_target_catch_all_applies_only_where_the_target_has_one(db, mail_stack, linked):
    refused(mail_stack, f"nobody@{LINKED}")
    save_alias(db, f"@{TARGET}", [BOB])
    delivered(mail_stack, f"nobody@{LINKED}", BOB, "caught through the alias domain")
    delivered(mail_stack, f"alice@{LINKED}", ALICE, "a mailbox is still its own")


def test_an_explicit_alias_on_the_alias_domain_wins(db, mail_stack, linked):
    save_alias(db, f"sales@{TARGET}", [ALICE])
    save_alias(db, f"sales@{LINKED}", [BOB])
    delivered(mail_stack, f"sales@{LINKED}", BOB, "the explicit alias wins")
    delivered(mail_stack, f"sales@{TARGET}", ALICE, "the target alias is unchanged")
    # It may not take a mailbox's or a personal address's place: that mail is its owner's.
    for taken in (f"alice@{LINKED}", f"shop.alice@{LINKED}"):
        with pytest.raises(addressing.AliasRuleError, match="through the alias domain"):
            save_alias(db, taken, [BOB])
    with pytest.raises(addressing.AliasRuleError, match="must end in @mirror.example or in one of its alias"):
        save_alias(db, "sales@elsewhere.example", [BOB])


def test_disabled_mailboxes_and_domains_stay_disabled_through_the_alias_domain(db, mail_stack, linked):
    db.execute("UPDATE virtual_users SET active = false WHERE email = %s", (ALICE,))
    assert "This mailbox is disabled" in refused(mail_stack, f"alice@{LINKED}")
    delivered(mail_stack, f"bob@{LINKED}", BOB, "bob is not disabled")
    db.execute("UPDATE virtual_domains SET active = false WHERE name = %s", (TARGET,))
    refused(mail_stack, f"bob@{LINKED}")
    refused(mail_stack, f"team@{LINKED}")


def test_disabling_or_deleting_the_alias_domain_stops_delivery_at_once(db, mail_stack, linked):
    save_alias(db, f"sales@{LINKED}", [BOB])
    alias_domain_rules.set_alias_domain_active(db, CLI, name=LINKED, active=False)
    refused(mail_stack, f"alice@{LINKED}")
    refused(mail_stack, f"sales@{LINKED}")
    alias_domain_rules.set_alias_domain_active(db, CLI, name=LINKED, active=True)
    delivered(mail_stack, f"alice@{LINKED}", ALICE, "enabled again")
    removed = alias_domain_rules.delete_alias_domain(db, CLI, name=LINKED)
    assert removed == [f"sales@{LINKED}"]
    refused(mail_stack, f"alice@{LINKED}")
    assert alias_queries.rows_of(db, f"sales@{LINKED}") == []
    actions = [r["action"] for r in db.execute("SELECT action FROM portal_audit_log ORDER BY id").fetchall()]
    assert actions[-3:] == ["alias_domain.disable", "alias_domain.enable", "alias_domain.delete"]


def test_a_name_is_a_domain_or_an_alias_domain_never_both(db, linked):
    make_mailbox(db, "carol@third.example", PASSWORD)
    with pytest.raises(alias_domain_rules.AliasDomainError, match="already in use"):
        alias_domain_rules.create_alias_domain(db, CLI, name=TARGET, target="third.example")
    with pytest.raises(alias_domain_rules.AliasDomainError, match="already in use"):
        alias_domain_rules.create_alias_domain(db, CLI, name=LINKED, target="third.example")
    with pytest.raises(alias_domain_rules.AliasDomainError, match="already in use"):
        alias_domain_rules.create_alias_domain(db, CLI, name="third.example", target=TARGET)
    with pytest.raises(domain_rules.DomainExists):
        domain_rules.create_domain(db, CLI, name=LINKED, settings=domain_rules.settings_from())
    with pytest.raises(alias_domain_rules.AliasDomainError, match="an alias domain itself"):
        alias_domain_rules.create_alias_domain(db, CLI, name="fourth.example", target=LINKED)
    with pytest.raises(alias_domain_rules.AliasDomainError, match="not a domain here"):
        alias_domain_rules.create_alias_domain(db, CLI, name="fourth.example", target="missing.example")


def test_only_a_superadmin_links_alias_domains(db, linked):
    make_mailbox(db, "admin@mirror.example", PASSWORD)
    admin_id = db.execute("SELECT id FROM virtual_users WHERE email = 'admin@mirror.example'").fetchone()["id"]
    domain_id = domain_queries.get_domain_by_name(db, TARGET)["id"]
    db.execute("INSERT INTO portal_roles (user_id, role, domain_id) VALUES (%s, 'domain_admin', %s)",
               (admin_id, domain_id))
    admin = Actor("admin@mirror.example", "192.0.2.7", admin_id)
    for attempt in (lambda: alias_domain_rules.create_alias_domain(db, admin, name="other.test", target=TARGET),
                    lambda: alias_domain_rules.set_alias_domain_active(db, admin, name=LINKED, active=False),
                    lambda: alias_domain_rules.delete_alias_domain(db, admin, name=LINKED)):
        with pytest.raises(alias_domain_rules.AliasDomainRefused):
            attempt()
    assert db.execute("SELECT count(*) AS n FROM portal_alias_domains WHERE active").fetchone()["n"] == 1


def test_the_loop_check_understands_alias_domains(db, mail_stack, linked):
    alice = Actor(ALICE, "192.0.2.8", linked[ALICE])
    # alice's own address on the alias domain is alice: forwarding there alone would go round for ever.
    with pytest.raises(addressing.AliasRuleError, match="Your own address is not a forwarding destination"):
        forwarding_rules.save_forwarding(db, alice, addressing.Forwarding((f"alice@{LINKED}",), False), 10)
    # Forwarding x@alias to x@target is no loop when x@target is a mailbox.
    save_alias(db, f"bob.old@{LINKED}", [BOB])
    delivered(mail_stack, f"bob.old@{LINKED}", BOB, "explicit alias to the target mailbox")
    # Linking a domain that an alias already delivers into, where that closes a circle, is refused.
    save_alias(db, f"ring@{TARGET}", [f"ring@{LINKED}.two"])
    with pytest.raises(alias_domain_rules.AliasDomainError, match="circle"):
        alias_domain_rules.create_alias_domain(db, CLI, name=f"{LINKED}.two", target=TARGET)
    assert alias_queries.rows_of(db, f"ring@{TARGET}")  # nothing else changed


def test_deleting_a_mailbox_drops_rows_that_deliver_to_it_on_the_alias_domain(db, mail_stack, linked):
    make_mailbox(db, "carol@elsewhere.example", PASSWORD)
    carol_domain = domain_queries.get_domain_by_name(db, "elsewhere.example")["id"]
    alias_queries.replace_destinations(db, carol_domain, "to-alice@elsewhere.example", [f"alice@{LINKED}"])
    mailbox = db.execute("SELECT u.id, u.email, u.domain_id, d.name AS domain FROM virtual_users u JOIN"
                         " virtual_domains d ON d.id = u.domain_id WHERE u.email = %s", (ALICE,)).fetchone()
    mailbox_rules.delete_mailbox(db, CLI, mailbox=mailbox, mail_root=str(mail_stack.mail_root), grace_days=30)
    assert alias_queries.rows_of(db, "to-alice@elsewhere.example") == []
    # While the deleted mailboxes' mail waits for its purge, their domain's name cannot route anywhere else.
    domain = domain_queries.get_domain(db, domain_queries.get_domain_by_name(db, TARGET)["id"])
    mailbox_rules.delete_domain(db, CLI, domain=domain, mail_root=str(mail_stack.mail_root), grace_days=30)
    assert db.execute("SELECT count(*) AS n FROM portal_alias_domains").fetchone()["n"] == 0  # went with it
    with pytest.raises(alias_domain_rules.AliasDomainError, match="still kept"):
        alias_domain_rules.create_alias_domain(db, CLI, name=TARGET, target="elsewhere.example")


def run(app, *args, input=None):
    return app.test_cli_runner().invoke(args=list(args), input=input)


def test_the_command_line_links_lists_disables_and_unlinks(app, db, mail_stack, linked):
    assert run(app, "alias-domain", "list").output == f"{LINKED}\t{TARGET}\tactive\n"
    result = run(app, "alias-domain", "add", "Second.TEST", TARGET, "--disabled")
    assert result.exit_code == 0 and result.output == f"second.test is an alias domain of {TARGET} (disabled)\n"
    refused(mail_stack, "alice@second.test")
    assert run(app, "alias-domain", "enable", "second.test").output == "second.test is active\n"
    # (Another address than the one just refused: an smtpd process keeps its last address resolution.)
    delivered(mail_stack, "bob@second.test", BOB, "through the second alias domain")
    # Aliases written on an alias domain belong to its target domain.
    result = run(app, "alias", "add", "sales@second.test", BOB)
    assert result.exit_code == 0, result.output
    delivered(mail_stack, "sales@second.test", BOB, "explicit alias from the command line")
    result = run(app, "alias", "add", "alice@second.test", BOB)
    assert result.exit_code == 1 and "through the alias domain second.test" in result.output
    result = run(app, "alias-domain", "add", "third.test", "missing.example")
    assert result.exit_code == 1 and "missing.example is not a domain here" in result.output
    result = run(app, "alias-domain", "delete", "second.test", "--yes")
    assert result.exit_code == 0 and "its aliases went with it: sales@second.test" in result.output
    assert run(app, "alias-domain", "disable", "second.test").output.endswith(
        "there is no alias domain second.test\n")


def test_csv_export_and_import_cover_alias_domains(app, db, linked, tmp_path):
    save_alias(db, f"sales@{LINKED}", [BOB])
    for kind in ("alias_domains", "aliases"):
        result = run(app, "export", kind, "--output", str(tmp_path / f"{kind}.csv"))
        assert result.exit_code == 0, result.output
    assert (tmp_path / "alias_domains.csv").read_text().splitlines() == ["name,target,active",
                                                                        f"{LINKED},{TARGET},true"]
    assert f"sales@{LINKED},{BOB}," in (tmp_path / "aliases.csv").read_text()
    # Into an empty portal with the same domains and mailboxes: alias domains, then aliases.
    alias_domain_rules.delete_alias_domain(db, CLI, name=LINKED)
    db.execute("DELETE FROM virtual_aliases")
    for kind in ("alias_domains", "aliases"):
        result = run(app, "import", kind, str(tmp_path / f"{kind}.csv"))
        assert result.exit_code == 0, result.output
    assert alias_queries.destinations(db, f"sales@{LINKED}") == [BOB]
    assert [r["action"] for r in db.execute(
        "SELECT action FROM portal_audit_log WHERE target = %s ORDER BY id", (LINKED,)).fetchall()][-1] == \
        "alias_domain.create"
    # Every problem, with its line, and nothing written.
    bad = tmp_path / "bad.csv"
    bad.write_text(f"name,target\nnew.test,{TARGET}\n{TARGET},{TARGET}\nother.test,missing.example\n"
                   "new.test,mirror.example\n")
    result = run(app, "import", "alias_domains", str(bad))
    assert result.exit_code == 1
    for expected in (f"line 3: {TARGET} is already in use", "line 4: there is no domain missing.example",
                     "line 5: new.test is also on line 2"):
        assert expected in result.output, result.output
    assert db.execute("SELECT count(*) AS n FROM portal_alias_domains").fetchone()["n"] == 1


def test_a_superadmin_links_disables_and_unlinks_on_the_domain_page(app, db, mail_stack, linked):
    make_mailbox(db, f"root@{TARGET}", PASSWORD)
    root = grant_and_sign_in(app, [("superadmin", f"root@{TARGET}")], {"root": f"root@{TARGET}"}, PASSWORD)["root"]
    settings = f"/admin/domains/{TARGET}/settings"
    token = csrf_token(root, settings)
    response = root.post(f"/admin/domains/{TARGET}/alias-domains", data={"csrf_token": token, "name": "Page.TEST"})
    assert response.status_code == 302 and response.headers["Location"] == settings
    page = root.get(settings).get_data(as_text=True)
    assert "page.test now delivers to the addresses of mirror.example" in page and "page.test" in page
    delivered(mail_stack, "alice@page.test", ALICE, "linked on the page")
    assert "also: mirror.test, page.test" in root.get("/admin/domains").get_data(as_text=True)
    # A name in use is answered on the page, in words, and nothing changes.
    response = root.post(f"/admin/domains/{TARGET}/alias-domains", data={"csrf_token": token, "name": LINKED})
    assert response.status_code == 409
    assert "mirror.test is already in use as a domain or an alias domain" in response.get_data(as_text=True)
    response = root.post(f"/admin/domains/{TARGET}/alias-domains/page.test/state",
                         data={"csrf_token": token, "active": "0"})
    assert response.status_code == 302
    refused(mail_stack, "alice@page.test")
    save_alias(db, "sales@page.test", [BOB])
    confirm = root.get(f"/admin/domains/{TARGET}/alias-domains/page.test/delete")
    assert confirm.status_code == 200 and "sales@page.test" in confirm.get_data(as_text=True)
    response = root.post(f"/admin/domains/{TARGET}/alias-domains/page.test/delete", data={"csrf_token": token})
    assert response.status_code == 302
    assert "These aliases went with it: sales@page.test." in root.get(settings).get_data(as_text=True)
    # Another domain's alias domain is not reachable through this domain's URL.
    make_mailbox(db, "x@other.example", PASSWORD)
    alias_domain_rules.create_alias_domain(db, CLI, name="other.test", target="other.example")
    assert root.get(f"/admin/domains/{TARGET}/alias-domains/other.test/delete").status_code == 404
    # Without the CSRF token nothing happens.
    assert root.post(f"/admin/domains/{TARGET}/alias-domains", data={"name": "nocsrf.test"}).status_code == 400


def test_a_domain_admin_writes_an_alias_on_the_alias_domain_from_the_alias_page(app, db, mail_stack, linked):
    make_mailbox(db, f"boss@{TARGET}", PASSWORD)
    boss = grant_and_sign_in(app, [("domain-admin", f"boss@{TARGET}", TARGET)], {"boss": f"boss@{TARGET}"},
                             PASSWORD)["boss"]
    form = boss.get(f"/admin/domains/{TARGET}/aliases/new").get_data(as_text=True)
    assert f'<option value="{LINKED}">@{LINKED}</option>' in form
    token = csrf_token(boss, f"/admin/domains/{TARGET}/aliases/new")
    response = boss.post(f"/admin/domains/{TARGET}/aliases/new", data={
        "csrf_token": token, "local_part": "support", "on_domain": LINKED, "destinations": BOB})
    assert response.status_code == 302, response.get_data(as_text=True)
    delivered(mail_stack, f"support@{LINKED}", BOB, "alias written on the alias domain from the page")
    # Not on another domain, and not over a mailbox's address on the alias domain.
    response = boss.post(f"/admin/domains/{TARGET}/aliases/new", data={
        "csrf_token": token, "local_part": "x", "on_domain": "elsewhere.example", "destinations": BOB})
    assert response.status_code == 400 and "Choose mirror.example or one of its alias domains" in \
        response.get_data(as_text=True)
    response = boss.post(f"/admin/domains/{TARGET}/aliases/new", data={
        "csrf_token": token, "local_part": "alice", "on_domain": LINKED, "destinations": BOB})
    assert response.status_code in (400, 409)
    assert "through the alias domain mirror.test" in response.get_data(as_text=True)
    assert alias_queries.rows_of(db, f"alice@{LINKED}") == []


def test_a_new_alias_cannot_close_a_circle_through_its_own_alias_domain(db, linked):
    # x@target -> x@alias: Postfix maps x@alias straight back to x@target, for ever.
    for destination in (f"loop@{LINKED}", f"loop+tag@{LINKED}"):
        with pytest.raises(addressing.AliasRuleError, match="circle"):
            save_alias(db, f"loop@{TARGET}", [destination])
    assert alias_queries.rows_of(db, f"loop@{TARGET}") == []


def test_an_alias_on_the_alias_domain_blocks_a_new_mailbox_or_personal_address_of_that_name(db, linked):
    save_alias(db, f"newhire@{LINKED}", [BOB])
    domain_id = domain_queries.get_domain_by_name(db, TARGET)["id"]
    with pytest.raises(mailbox_rules.MailboxRuleError, match="newhire@mirror.test is an alias on an alias domain"):
        mailbox_rules.create_mailbox(db, CLI, domain_id=domain_id, address=f"newhire@{TARGET}",
                                     password_hash="{SHA512-CRYPT}$6$x$y", quota_bytes=0, reserved=[])
    alice = Actor(ALICE, "192.0.2.9", linked[ALICE])
    with pytest.raises(addressing.AliasRuleError, match="is an alias on an alias domain"):
        forwarding_rules.add_personal_alias(db, alice, "newhire", reserved=[], delimiter="+")
    assert db.execute("SELECT count(*) AS n FROM virtual_users WHERE email = %s", (f"newhire@{TARGET}",)
                      ).fetchone()["n"] == 0


def test_csv_import_refuses_a_circle_through_an_alias_domain_across_rows(app, db, linked, tmp_path):
    path = tmp_path / "aliases.csv"
    path.write_text(f"source,destination\nring-a@{TARGET},ring-b@{LINKED}\nring-b@{TARGET},ring-a@{LINKED}\n")
    result = run(app, "import", "aliases", str(path))
    assert result.exit_code == 1 and "circle" in result.output, result.output
    assert alias_queries.rows_of(db, f"ring-a@{TARGET}") == []
