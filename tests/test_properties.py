"""Mail safety for every sequence of allowed actions: a property-based test (Hypothesis) against the real stack.

Hypothesis draws short sequences of actions by the roles that are not
superadmins (users, a domain admin, a helpdesk member), each through the rule
functions the pages and commands call, with addresses drawn from a pool that
includes other people's mailboxes, a deleted mailbox, reserved names, tagged
addresses and names that are no safe folder. After every action, whatever its
outcome, four things must hold:

- no address the actor does not own newly routes to the actor, asked of
  Postfix's real alias map (postmap -q on the shipped pgsql map);
- every maildir queued for purging is exactly its mailbox's own folder;
- no role changed (only a superadmin changes roles, and none acts here);
- every change to the mail tables came with an audit row naming the actor.

The examples are bounded (count and length) to fit in CI.
"""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import HealthCheck
from hypothesis import example
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from portal import maildirs
from portal.access import Actor
from portal.queries import mailboxes as mailbox_queries
from portal.rules import addressing
from portal.rules import aliases as alias_rules
from portal.rules import forwarding as forwarding_rules
from portal.rules import helpdesk as helpdesk_rules
from portal.rules import mailboxes as mailbox_rules
from tests.mail import make_mailbox

# Touches Dovecot or Postfix: scripts/test runs it on the other Debian release too.
pytestmark = pytest.mark.mail_server

RESERVED = ["postmaster", "abuse", "admin"]
USERS = ["alice@a.example", "bob@a.example", "dave@b.example"]
ADMIN = "boss@a.example"
HELPDESK = "help@a.example"
ACTORS = [*USERS, ADMIN, HELPDESK]
LOCAL_PARTS = ["alice", "bob", "gone", "postmaster", "abuse", "sales", "bob+x", "alice.x", "x/y", "..", "dave"]
DESTINATIONS = [*USERS, ADMIN, HELPDESK, "gone@a.example", "postmaster@a.example", "bob+x@a.example",
                "alice.x@a.example", "sales@a.example", "friend@remote.example"]
# The addresses whose routing is watched: every mailbox, the deleted one, reserved ones, and names that may
# come to exist through the actions.
WATCHED = sorted({*USERS, ADMIN, HELPDESK, "gone@a.example", "postmaster@a.example", "abuse@a.example",
                  "@a.example", "sales@a.example", "alice.x@a.example", "bob+x@a.example", "dave@a.example",
                  "postmaster@b.example"})

action = st.one_of(
    st.tuples(st.just("forward"), st.sampled_from(USERS), st.lists(st.sampled_from(DESTINATIONS), max_size=2),
              st.booleans()),
    st.tuples(st.just("personal"), st.sampled_from(USERS), st.sampled_from(LOCAL_PARTS)),
    st.tuples(st.just("alias"), st.just(ADMIN), st.sampled_from([*LOCAL_PARTS, "@"]),
              st.lists(st.sampled_from(DESTINATIONS), min_size=1, max_size=2)),
    st.tuples(st.just("delete_alias"), st.just(ADMIN), st.sampled_from(LOCAL_PARTS)),
    st.tuples(st.just("mailbox"), st.just(ADMIN), st.sampled_from(LOCAL_PARTS)),
    st.tuples(st.just("delete_mailbox"), st.sampled_from([ADMIN, HELPDESK]), st.sampled_from([*USERS, ADMIN])),
    st.tuples(st.just("disable"), st.sampled_from([ADMIN, HELPDESK, *USERS]), st.sampled_from([*USERS, ADMIN]),
              st.booleans()),
)


def route_map(mail_stack) -> dict[str, set[str]]:
    """What Postfix's shipped alias map answers for every watched address (one postmap run)."""
    table = mail_stack.postfix_dir / "pgsql-aliases.cf"
    result = subprocess.run(["postmap", "-c", str(mail_stack.postfix_dir), "-q", "-", f"pgsql:{table}"],
                            input="\n".join(WATCHED) + "\n", capture_output=True, text=True, timeout=30, check=True)
    routes = {address: set() for address in WATCHED}
    for line in result.stdout.splitlines():
        key, _, value = line.partition("\t")
        routes[key] = set(value.split(","))
    return routes


def protected_from(db, actor: str) -> set[str]:
    """The watched addresses the actor may never route to itself: other people's mailboxes, a deleted mailbox
    whose mail is still kept, reserved names and the catch-all (a superadmin's), and other people's personal
    addresses. Read before the action."""
    mailboxes = {r["email"] for r in db.execute("SELECT email FROM virtual_users").fetchall()}
    deleted = {r["email"] for r in db.execute(
        "SELECT email FROM portal_mailbox_removals WHERE purged_at IS NULL").fetchall()}
    personal = {r["source"] for r in db.execute(
        "SELECT a.source FROM virtual_aliases a JOIN virtual_users u ON u.id = a.owner_id WHERE u.email <> %s",
        (actor,)).fetchall()}
    reserved = {a for a in WATCHED if a.startswith("@") or a.partition("@")[0] in RESERVED}
    return (mailboxes - {actor}) | deleted | personal | reserved


def watched_state(db) -> dict:
    return {
        "mail": [db.execute("SELECT id, email, active, password FROM virtual_users ORDER BY id").fetchall(),
                 db.execute("SELECT source, destination, owner_id FROM virtual_aliases ORDER BY 1, 2").fetchall(),
                 db.execute("SELECT email, maildir FROM portal_mailbox_removals ORDER BY id").fetchall()],
        "roles": db.execute("SELECT user_id, role, domain_id FROM portal_roles ORDER BY id").fetchall(),
        "audit": db.execute("SELECT actor FROM portal_audit_log ORDER BY id").fetchall(),
    }


def reset_world(app, db, mail_stack) -> None:
    db.execute("TRUNCATE virtual_aliases, virtual_users, virtual_domains, portal_roles, portal_audit_log,"
               " portal_sessions, portal_mailbox_removals, portal_quota_usage, portal_usage_levels"
               " RESTART IDENTITY CASCADE")
    for address in [*USERS, ADMIN, HELPDESK, "gone@a.example", "root@hq.example"]:
        make_mailbox(db, address, "property test password 5")
    db.execute("UPDATE virtual_domains SET allow_personal_aliases = true")
    runner = app.test_cli_runner()
    for args in (("domain-admin", ADMIN, "a.example"), ("helpdesk", HELPDESK, "a.example"),
                 ("superadmin", "root@hq.example")):
        assert runner.invoke(args=["admin", "grant", *args]).exit_code == 0
    # The superadmin set these up; nobody acting below owns them.
    db.execute("INSERT INTO virtual_aliases (domain_id, source, destination) SELECT id, 'postmaster@a.example',"
               " 'root@hq.example' FROM virtual_domains WHERE name = 'a.example'")
    assert runner.invoke(args=["mailbox", "delete", "gone@a.example", "--yes"]).exit_code == 0


def perform(db, app, mail_stack, step) -> None:
    """Carry out one action as its actor; a refusal is an answer too."""
    kind, actor_address = step[0], step[1]
    mailbox = mailbox_queries.get_mailbox(db, actor_address)
    if mailbox is None:
        return  # the actor's mailbox was deleted by an earlier step
    actor = Actor(actor_address, "198.51.100.77", mailbox["id"])
    domain = db.execute("SELECT * FROM virtual_domains WHERE name = 'a.example'").fetchone()
    refused = (addressing.AliasRuleError, alias_rules.AliasNotFound, mailbox_rules.MailboxRuleError,
               helpdesk_rules.SupportRefused)
    try:
        if kind == "forward":
            wanted = addressing.Forwarding(tuple(dict.fromkeys(step[2])), keep_copy=step[3])
            forwarding_rules.save_forwarding(db, actor, wanted, 5)
        elif kind == "personal":
            forwarding_rules.add_personal_alias(db, actor, step[2], reserved=RESERVED, delimiter="+")
        elif kind == "alias":
            source = "@a.example" if step[2] == "@" else f"{step[2]}@a.example"
            exists = bool(db.execute("SELECT 1 FROM virtual_aliases WHERE source = %s", (source,)).fetchone())
            alias_rules.save_alias(db, actor, domain=domain, source=source, destinations=list(dict.fromkeys(step[3])),
                                   create=not exists, reserved=RESERVED, delimiter="+")
        elif kind == "delete_alias":
            alias_rules.delete_alias(db, actor, domain=domain, source=f"{step[2]}@a.example", reserved=RESERVED)
        elif kind == "mailbox":
            mailbox_rules.create_mailbox(db, actor, domain_id=domain["id"], address=f"{step[2]}@a.example",
                                         password_hash="{PLAIN}unused", quota_bytes=0, reserved=RESERVED,
                                         must_change=True)
        elif kind == "delete_mailbox":
            target = mailbox_queries.get_mailbox(db, step[2])
            if target:
                mailbox_rules.delete_mailbox(db, actor, mailbox=target, mail_root=str(mail_stack.mail_root),
                                             grace_days=30)
        elif kind == "disable":
            target = mailbox_queries.get_mailbox(db, step[2])
            if target:
                helpdesk_rules.set_active(db, actor, target, active=step[3], reason="property test")
    except refused:
        pass


def check_invariants(db, mail_stack, actor: str, before: dict, protected: set[str], routes_before: dict,
                     routes_after: dict) -> None:
    after = watched_state(db)
    for address, destinations in routes_after.items():
        if actor in destinations and actor not in routes_before[address]:
            assert address not in protected, f"{address} now routes to {actor}, who does not own it"
    for removal in after["mail"][2]:
        if removal["maildir"]:
            assert removal["maildir"] == str(maildirs.maildir_of(str(mail_stack.mail_root), removal["email"]))
    assert after["roles"] == before["roles"], "a role changed without a superadmin"
    if after["mail"] != before["mail"]:
        new_audit = after["audit"][len(before["audit"]):]
        assert any(row["actor"] == actor for row in new_audit), "a change without its audit row"


# The sequences, always tried first; Hypothesis then explores around them.
@example(steps=[("personal", "alice@a.example", "gone")])
@example(steps=[("alias", ADMIN, "gone", ["boss@a.example"])])
@example(steps=[("delete_mailbox", ADMIN, "bob@a.example"), ("personal", "alice@a.example", "bob")])
@example(steps=[("mailbox", ADMIN, "x/y"), ("delete_mailbox", ADMIN, "alice@a.example")])
@example(steps=[("alias", ADMIN, "postmaster", ["boss@a.example"]), ("alias", ADMIN, "@", ["boss@a.example"])])
@example(steps=[("personal", "bob@a.example", "alice.x"), ("alias", ADMIN, "alice.x", ["boss@a.example"])])
@settings(max_examples=25, stateful_step_count=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(action, min_size=1, max_size=6))
def test_no_sequence_of_allowed_actions_routes_others_mail(app, db, mail_stack, steps):
    reset_world(app, db, mail_stack)
    routes = route_map(mail_stack)
    with app.test_request_context():
        for step in steps:
            before, protected = watched_state(db), protected_from(db, step[1])
            perform(db, app, mail_stack, step)
            routes_after = route_map(mail_stack)
            check_invariants(db, mail_stack, step[1], before, protected, routes, routes_after)
            routes = routes_after
