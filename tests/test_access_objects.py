"""The object dimension of the access matrix: every role against every kind of target, through the rules.

The route matrix (test_access.py) says which pages a role may open. This one
says what each role may do to each kind of target, asked of the rule functions
themselves (which the pages, the command line and the import all call): one's
own mailbox, another user's, an admin's, another domain's, a deleted address, a
reserved name and an unsafe local part. A refused call raises and writes
nothing; an allowed one writes.
"""

from __future__ import annotations

import pytest

from portal.access import Actor
from portal.queries import mailboxes as mailbox_queries
from portal.rules import aliases as alias_rules
from portal.rules import helpdesk as helpdesk_rules
from portal.rules import mailboxes as mailbox_rules
from tests.mail import make_mailbox

RESERVED = ["postmaster", "abuse", "admin"]
ROLES = ["user", "helpdesk_a", "admin_a", "admin_b", "superadmin", "cli"]
# The acting mailbox of each role (the command line has none).
ACTORS = {"user": "carol@a.example", "helpdesk_a": "help@a.example", "admin_a": "boss@a.example",
          "admin_b": "boss@b.example", "superadmin": "root@hq.example"}
TARGETS = {"own": None, "user_a": "dave@a.example", "admin_a2": "boss2@a.example", "user_b": "erin@b.example"}

Y, N = True, False
# May the role change (the size limit of) / delete / reset the password of the target?
MANAGE = {
    "user":       {"own": N, "user_a": N, "admin_a2": N, "user_b": N},
    "helpdesk_a": {"own": N, "user_a": N, "admin_a2": N, "user_b": N},
    "admin_a":    {"own": Y, "user_a": Y, "admin_a2": N, "user_b": N},
    "admin_b":    {"own": Y, "user_a": N, "admin_a2": N, "user_b": Y},
    "superadmin": {"own": Y, "user_a": Y, "admin_a2": Y, "user_b": Y},
    "cli":        {"own": Y, "user_a": Y, "admin_a2": Y, "user_b": Y},
}
# Nobody deletes the mailbox they act from (the command line has none: its "own" is an ordinary user's).
DELETE = {role: {kind: allowed and (kind != "own" or role == "cli") for kind, allowed in row.items()}
          for role, row in MANAGE.items()}
HELP = {
    "user":       {"own": N, "user_a": N, "admin_a2": N, "user_b": N},
    "helpdesk_a": {"own": N, "user_a": Y, "admin_a2": N, "user_b": N},
    "admin_a":    {"own": N, "user_a": Y, "admin_a2": N, "user_b": N},
    "admin_b":    {"own": N, "user_a": N, "admin_a2": N, "user_b": Y},
    "superadmin": {"own": N, "user_a": Y, "admin_a2": Y, "user_b": Y},
    "cli":        {"own": Y, "user_a": Y, "admin_a2": Y, "user_b": Y},
}
# May the role create a new mailbox / an alias at this kind of address in a.example?
NEW_ADDRESSES = {"fresh": "frank@a.example", "deleted": "gone@a.example", "reserved": "postmaster@a.example",
                 "unsafe": "x/y@a.example"}
CREATE_MAILBOX = {
    "user": {"fresh": N, "deleted": N, "reserved": N, "unsafe": N},
    "helpdesk_a": {"fresh": N, "deleted": N, "reserved": N, "unsafe": N},
    "admin_a": {"fresh": Y, "deleted": N, "reserved": N, "unsafe": N},
    "admin_b": {"fresh": N, "deleted": N, "reserved": N, "unsafe": N},
    "superadmin": {"fresh": Y, "deleted": N, "reserved": Y, "unsafe": N},
    "cli": {"fresh": Y, "deleted": N, "reserved": Y, "unsafe": N},
}
# An alias address is no folder: "x/y" is a valid (if odd) alias, as RFC 5322 allows; the rest as for mailboxes.
CREATE_ALIAS = {role: {**row, "unsafe": row["fresh"]} for role, row in CREATE_MAILBOX.items()}


@pytest.fixture
def world(app, db):
    """Two domains with users, a helpdesk member and admins, a superadmin, and a deleted address."""
    runner = app.test_cli_runner()
    for address in [*ACTORS.values(), *[t for t in TARGETS.values() if t], "gone@a.example"]:
        make_mailbox(db, address, "object matrix password 1")
    for args in (("helpdesk", "help@a.example", "a.example"), ("domain-admin", "boss@a.example", "a.example"),
                 ("domain-admin", "boss2@a.example", "a.example"), ("domain-admin", "boss@b.example", "b.example"),
                 ("superadmin", "root@hq.example")):
        assert runner.invoke(args=["admin", "grant", *args]).exit_code == 0
    assert runner.invoke(args=["mailbox", "delete", "gone@a.example", "--yes"]).exit_code == 0
    return app


def actor_for(db, role: str) -> Actor:
    if role == "cli":
        return Actor.command_line()
    address = ACTORS[role]
    return Actor(address, "198.51.100.9", mailbox_queries.get_mailbox(db, address)["id"])


def target_of(db, role: str, kind: str) -> dict:
    address = TARGETS[kind] or ACTORS.get(role, "carol@a.example")
    return mailbox_queries.get_mailbox(db, address)


def state(db) -> list:
    return [db.execute("SELECT * FROM virtual_users ORDER BY id").fetchall(),
            db.execute("SELECT * FROM virtual_aliases ORDER BY id").fetchall(),
            db.execute("SELECT count(*) FROM portal_audit_log").fetchone()]


def outcome(db, app, call) -> bool:
    """Run ``call``; True when it went through, False when refused (and then nothing was written)."""
    before = state(db)
    with app.test_request_context():
        try:
            call()
        except (mailbox_rules.MailboxRuleError, helpdesk_rules.SupportRefused, alias_rules.addressing.AliasRuleError,
                alias_rules.AliasNotFound):
            assert state(db) == before
            return False
    assert state(db) != before
    return True


CASES = [(role, kind) for role in ROLES for kind in TARGETS]


@pytest.mark.parametrize(("role", "kind"), CASES)
def test_change_a_mailbox(world, db, role, kind):
    target = target_of(db, role, kind)
    allowed = outcome(db, world, lambda: mailbox_rules.update_mailbox(
        db, actor_for(db, role), mailbox=target, quota_bytes=target["quota_bytes"] + 1024, active=True,
        password_hash=None))
    assert allowed is MANAGE[role][kind]


@pytest.mark.parametrize(("role", "kind"), CASES)
def test_delete_a_mailbox(world, db, role, kind):
    target = target_of(db, role, kind)
    allowed = outcome(db, world, lambda: mailbox_rules.delete_mailbox(
        db, actor_for(db, role), mailbox=target, mail_root="/var/lib/mail-portal-test-none", grace_days=30))
    assert allowed is DELETE[role][kind]


@pytest.mark.parametrize(("role", "kind"), CASES)
def test_helpdesk_actions_on_a_mailbox(world, db, role, kind):
    target = target_of(db, role, kind)
    allowed = outcome(db, world, lambda: helpdesk_rules.set_active(
        db, actor_for(db, role), target, active=False, reason="matrix"))
    assert allowed is HELP[role][kind]


NEW_CASES = [(role, kind) for role in ROLES for kind in NEW_ADDRESSES]


@pytest.mark.parametrize(("role", "kind"), NEW_CASES)
def test_create_a_mailbox_at(world, db, role, kind):
    domain_id = db.execute("SELECT id FROM virtual_domains WHERE name = 'a.example'").fetchone()["id"]
    allowed = outcome(db, world, lambda: mailbox_rules.create_mailbox(
        db, actor_for(db, role), domain_id=domain_id, address=NEW_ADDRESSES[kind], password_hash="{PLAIN}unused",
        quota_bytes=0, reserved=RESERVED))
    assert allowed is CREATE_MAILBOX[role][kind]


@pytest.mark.parametrize(("role", "kind"), NEW_CASES)
def test_create_an_alias_at(world, db, role, kind):
    domain = db.execute("SELECT id, name FROM virtual_domains WHERE name = 'a.example'").fetchone()
    allowed = outcome(db, world, lambda: alias_rules.save_alias(
        db, actor_for(db, role), domain=domain, source=NEW_ADDRESSES[kind], destinations=["dave@a.example"],
        create=True, reserved=RESERVED, delimiter="+"))
    assert allowed is CREATE_ALIAS[role][kind]
