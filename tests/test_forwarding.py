"""Forwarding and personal aliases: the page, its refusals, and real mail through Postfix."""

from __future__ import annotations

import smtplib
import subprocess
import threading
import time

import pytest

from tests.conftest import csrf_token
from tests.conftest import make_client
from tests.conftest import sign_in
from tests.mail import make_mailbox
from tests.mail import send_mail
from tests.mail import wait_for_maildir_message

# Touches Dovecot or Postfix: scripts/test runs it on the other Debian release too.
pytestmark = pytest.mark.mail_server

DOMAIN = "fwd.example"
ALICE, BOB, CAROL = f"alice@{DOMAIN}", f"bob@{DOMAIN}", f"carol@{DOMAIN}"
PASSWORD = "a long enough test password 7"


@pytest.fixture
def mailboxes(db):
    return {address: make_mailbox(db, address, PASSWORD) for address in (ALICE, BOB, CAROL)}


def signed_in_as(app, address):
    client = make_client(app)
    assert sign_in(client, address, PASSWORD).status_code == 302
    return client


@pytest.fixture
def alice(app, mailboxes):
    return signed_in_as(app, ALICE)


def save_forwarding(client, destinations: list[str] | str, keep_copy: bool = False):
    data = {
        "csrf_token": csrf_token(client, "/account/forwarding"),
        "destinations": destinations if isinstance(destinations, str) else "\n".join(destinations),
    }
    if keep_copy:
        data["keep_copy"] = "y"
    return client.post("/account/forwarding", data=data)


def add_alias(client, local_part: str):
    return client.post(
        "/account/aliases",
        data={"csrf_token": csrf_token(client, "/account/forwarding"), "local_part": local_part},
    )


def rows(db, source: str | None = None) -> list[tuple[str, str]]:
    query = "SELECT source, destination FROM virtual_aliases"
    params: tuple = ()
    if source:
        query += " WHERE source = %s"
        params = (source,)
    return [(r["source"], r["destination"]) for r in db.execute(query + " ORDER BY 1, 2", params).fetchall()]


def text(response) -> str:
    return response.get_data(as_text=True)


# --- the page --------------------------------------------------------------------------------------


def test_page_shows_plain_delivery_at_first(alice):
    page = text(alice.get("/account/forwarding"))
    assert "is delivered to your mailbox. Nothing is forwarded." in page
    assert "You have 0 of 5." in page


def test_forward_without_copy(alice, db):
    response = save_forwarding(alice, [BOB])
    assert response.status_code == 302
    assert rows(db) == [(ALICE, BOB)]
    page = text(alice.get("/account/forwarding"))
    assert "Forwarding saved. New mail goes to bob@fwd.example only." in page
    assert "is <strong>not</strong> kept in your mailbox" in page


def test_forward_with_copy_and_two_destinations(alice, db):
    assert save_forwarding(alice, [f"  {BOB.upper()} ", "someone@elsewhere.example"], keep_copy=True).status_code == 302
    assert rows(db) == [(ALICE, ALICE), (ALICE, BOB), (ALICE, "someone@elsewhere.example")]
    assert "stays in your mailbox and is also forwarded to" in text(alice.get("/account/forwarding"))


def test_switching_off_removes_the_rows(alice, db):
    save_forwarding(alice, [BOB], keep_copy=True)
    assert save_forwarding(alice, "", keep_copy=True).status_code == 302
    assert rows(db) == []
    assert "Forwarding is off" in text(alice.get("/account/forwarding"))


def test_keep_copy_without_destinations_stores_nothing(alice, db):
    assert save_forwarding(alice, "", keep_copy=False).status_code == 302
    assert rows(db) == []


def test_changes_are_audited(alice, db):
    save_forwarding(alice, [BOB])
    save_forwarding(alice, [BOB])  # no change, no row
    entries = db.execute("SELECT action, target, summary FROM portal_audit_log").fetchall()
    assert len(entries) == 1
    assert entries[0]["action"] == "forwarding.update" and entries[0]["target"] == ALICE
    assert entries[0]["summary"]["after"] == {"destinations": [BOB], "keep_copy": False}


@pytest.mark.parametrize(
    ("destinations", "message"),
    [
        (["not an address"], "Line 1: &#39;not an address&#39; is not an e-mail address."),
        ([BOB, "bad@@example.com"], "Line 2:"),
        ([BOB, BOB.upper()], "Line 2: bob@fwd.example is listed twice."),
        ([ALICE], "Your own address is not a forwarding destination"),
        ([f"user{n}@elsewhere.example" for n in range(11)], "At most 10 forwarding addresses are allowed."),
        (["bob@fwd.example\r\nRCPT TO:<x@evil.example>"], "Line 2:"),
        (["bob\x00@fwd.example"], "contains control characters"),
        (["a" * 70 + "@elsewhere.example"], "is not an e-mail address"),
        (["x" * 300], "is not an e-mail address"),
    ],
)
def test_bad_destinations_are_refused_and_nothing_is_written(alice, db, destinations, message):
    save_forwarding(alice, [CAROL], keep_copy=True)
    before = rows(db)
    response = save_forwarding(alice, destinations)
    assert response.status_code == 400
    assert message in text(response)
    assert rows(db) == before


def test_two_way_loop_is_refused(app, alice, db, mailboxes):
    bob = signed_in_as(app, BOB)
    assert save_forwarding(bob, [ALICE]).status_code == 302
    response = save_forwarding(alice, [BOB])
    assert response.status_code == 400
    assert "round in a circle (alice@fwd.example \u2192 bob@fwd.example \u2192 alice@fwd.example)" in text(response)
    assert rows(db) == [(BOB, ALICE)]
    # Keeping a copy breaks the circle: Postfix stops at an address that maps to itself.
    assert save_forwarding(alice, [BOB], keep_copy=True).status_code == 302


def test_longer_loop_is_refused(app, alice, db, mailboxes):
    assert save_forwarding(signed_in_as(app, BOB), [CAROL]).status_code == 302
    assert save_forwarding(signed_in_as(app, CAROL), [ALICE]).status_code == 302
    response = save_forwarding(alice, ["friend@elsewhere.example", BOB])
    assert response.status_code == 400
    hops = " \u2192 ".join([ALICE, BOB, CAROL, ALICE])
    assert hops in text(response)


def test_configured_maximum(app_factory, db, mailboxes):
    client = signed_in_as(app_factory(FORWARD_MAX_DESTINATIONS=2), ALICE)
    assert save_forwarding(client, [BOB, CAROL]).status_code == 302
    response = save_forwarding(client, [BOB, CAROL, "third@elsewhere.example"])
    assert response.status_code == 400 and "At most 2 forwarding addresses" in text(response)


def test_forwarding_needs_sign_in_and_csrf(client, alice, db):
    assert client.post("/account/forwarding", data={"destinations": BOB}).status_code in (302, 400)
    assert alice.post("/account/forwarding", data={"destinations": BOB}).status_code == 400
    assert rows(db) == []


def test_concurrent_saves_leave_one_whole_answer(app, alice, db):
    sets = [[BOB], [CAROL, "x@elsewhere.example"], [BOB, CAROL], ["y@elsewhere.example"]]
    tokens = [csrf_token(alice, "/account/forwarding") for _ in sets]
    results = []

    def save(destinations, token):
        data = {"csrf_token": token, "destinations": "\n".join(destinations)}
        results.append(alice.post("/account/forwarding", data=data).status_code)

    threads = [threading.Thread(target=save, args=(s, t)) for s, t in zip(sets, tokens, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [302] * len(sets)
    final = sorted(d for _, d in rows(db, ALICE))
    assert final in [sorted(s) for s in sets]


def test_concurrent_loop_halves_cannot_both_land(app, db, mailboxes):
    alice, bob = signed_in_as(app, ALICE), signed_in_as(app, BOB)
    token_a, token_b = csrf_token(alice, "/account/forwarding"), csrf_token(bob, "/account/forwarding")
    results = {}

    def save(name, client, token, destination):
        results[name] = client.post("/account/forwarding", data={"csrf_token": token, "destinations": destination})

    threads = [
        threading.Thread(target=save, args=("alice", alice, token_a, BOB)),
        threading.Thread(target=save, args=("bob", bob, token_b, ALICE)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.status_code for r in results.values()) == [302, 400]
    assert len(rows(db)) == 1


# --- personal aliases ----------------------------------------------------------------------------------


def test_add_and_delete_a_personal_alias(alice, db, mailboxes):
    response = add_alias(alice, "Shop.Alice")
    assert response.status_code == 302
    row = db.execute("SELECT id, source, destination, owner_id FROM virtual_aliases").fetchone()
    assert (row["source"], row["destination"], row["owner_id"]) == ("shop.alice@fwd.example", ALICE, mailboxes[ALICE])
    page = text(alice.get("/account/forwarding"))
    assert "shop.alice@fwd.example now delivers to your mailbox." in page and "You have 1 of 5." in page

    response = alice.post(f"/account/aliases/{row['id']}/delete", data={"csrf_token": csrf_token(alice, "/")})
    assert response.status_code == 302
    assert rows(db) == []
    actions = [r["action"] for r in db.execute("SELECT action FROM portal_audit_log ORDER BY id").fetchall()]
    assert actions == ["alias.personal.add", "alias.personal.delete"]


@pytest.mark.parametrize(
    ("local_part", "message"),
    [
        ("bob", "bob@fwd.example is already in use."),
        ("postmaster", "postmaster@fwd.example is reserved"),
        ("Abuse", "abuse@fwd.example is reserved"),
        ("x@other.example", "Use letters, digits"),
        ("two words", "Use letters, digits"),
        ("ok\r\nRCPT TO:<x@evil.example>", "Use letters, digits"),
        ("", "Enter the part before the @."),
        ("a" * 65, "Use at most 64 characters."),
        ("\u212aing", "Use letters, digits"),
    ],
)
def test_personal_alias_refusals(alice, db, local_part, message):
    response = add_alias(alice, local_part)
    assert response.status_code == 400
    assert message in text(response)
    assert rows(db) == []


def test_cannot_take_another_users_alias_or_forward(app, alice, db, mailboxes):
    bob = signed_in_as(app, BOB)
    assert add_alias(bob, "sales").status_code == 302
    assert save_forwarding(bob, [CAROL]).status_code == 302
    before = rows(db)
    assert "sales@fwd.example is already in use." in text(add_alias(alice, "sales"))
    assert "bob@fwd.example is already in use." in text(add_alias(alice, "bob"))
    assert rows(db) == before


def test_domain_limit_and_switch(app, alice, db):
    db.execute("UPDATE virtual_domains SET max_personal_aliases = 1")
    assert add_alias(alice, "one").status_code == 302
    response = add_alias(alice, "two")
    assert response.status_code == 400 and "the most personal addresses allowed (1)" in text(response)
    db.execute("UPDATE virtual_domains SET allow_personal_aliases = false")
    assert "not enabled for fwd.example" in text(alice.get("/account/forwarding"))
    assert add_alias(alice, "three").status_code == 400
    assert len(rows(db)) == 1


def test_deleting_rows_that_are_not_ones_own_is_404(app, alice, db, mailboxes):
    bob = signed_in_as(app, BOB)
    add_alias(bob, "bobs.shop")
    db.execute("INSERT INTO virtual_aliases (domain_id, source, destination) VALUES (1, 'team@fwd.example', %s)",
               (ALICE,))
    before = rows(db)
    for alias_id in [r["id"] for r in db.execute("SELECT id FROM virtual_aliases").fetchall()] + [99999]:
        response = alice.post(f"/account/aliases/{alias_id}/delete", data={"csrf_token": csrf_token(alice, "/")})
        assert response.status_code == 404
    assert rows(db) == before


def test_concurrent_claims_of_one_address(app, db, mailboxes):
    alice, bob = signed_in_as(app, ALICE), signed_in_as(app, BOB)
    tokens = {"alice": csrf_token(alice, "/"), "bob": csrf_token(bob, "/")}
    results = []

    def claim(client, token):
        results.append(client.post("/account/aliases", data={"csrf_token": token, "local_part": "contested"}))

    threads = [threading.Thread(target=claim, args=(alice, tokens["alice"])),
               threading.Thread(target=claim, args=(bob, tokens["bob"]))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.status_code for r in results) == [302, 400]
    assert len(rows(db, "contested@fwd.example")) == 1


# --- what Postfix makes of it: postmap on the shipped maps, and real SMTP -----------------------------


def postmap(mail_stack, key: str, table: str = "pgsql-aliases.cf") -> str:
    result = subprocess.run(
        ["postmap", "-c", str(mail_stack.postfix_dir), "-q", key, f"pgsql:{mail_stack.postfix_dir / table}"],
        capture_output=True, text=True,
    )
    assert result.returncode in (0, 1), result.stderr
    return result.stdout.strip()


def maildir(mail_stack, address: str):
    local, _, domain = address.partition("@")
    return mail_stack.mail_root / domain / local


def delivered(mail_stack, address: str, subject: str) -> bool:
    try:
        wait_for_maildir_message(maildir(mail_stack, address), subject, seconds=0.01)
    except AssertionError:
        return False
    return True


def deliver_and_collect(mail_stack, to: str, subject: str, expect: list[str], recipients: list[str]) -> set[str]:
    """Send one message; wait for it at every expected mailbox; return who got it."""
    send_mail(mail_stack.smtp_port, to, subject)
    for address in expect:
        wait_for_maildir_message(maildir(mail_stack, address), subject)
    time.sleep(0.5)  # give a wrong extra delivery the chance to show up
    return {address for address in recipients if delivered(mail_stack, address, subject)}


EVERYONE = [ALICE, BOB, CAROL]


def test_mail_forwarded_without_copy(alice, mail_stack):
    save_forwarding(alice, [BOB])
    assert postmap(mail_stack, ALICE) == BOB
    assert deliver_and_collect(mail_stack, ALICE, "fwd no copy", [BOB], EVERYONE) == {BOB}


def test_mail_forwarded_with_copy(alice, mail_stack):
    save_forwarding(alice, [BOB], keep_copy=True)
    assert postmap(mail_stack, ALICE) == f"{ALICE},{BOB}"
    assert deliver_and_collect(mail_stack, ALICE, "fwd copy", [ALICE, BOB], EVERYONE) == {ALICE, BOB}


def test_mail_forwarded_to_two(alice, mail_stack):
    save_forwarding(alice, [BOB, CAROL])
    assert deliver_and_collect(mail_stack, ALICE, "fwd two", [BOB, CAROL], EVERYONE) == {BOB, CAROL}


def test_mail_to_a_personal_alias(alice, mail_stack):
    add_alias(alice, "shop.alice")
    assert postmap(mail_stack, f"shop.alice@{DOMAIN}") == ALICE
    assert deliver_and_collect(mail_stack, f"Shop.Alice@{DOMAIN}", "personal", [ALICE], EVERYONE) == {ALICE}


def test_catch_all_does_not_swallow_mailboxes(db, mailboxes, mail_stack):
    db.execute("INSERT INTO virtual_aliases (domain_id, source, destination) VALUES (1, %s, %s)", (f"@{DOMAIN}", CAROL))
    assert postmap(mail_stack, ALICE) == ALICE
    assert postmap(mail_stack, f"@{DOMAIN}") == CAROL
    assert deliver_and_collect(mail_stack, ALICE, "to alice", [ALICE], EVERYONE) == {ALICE}
    assert deliver_and_collect(mail_stack, f"nobody@{DOMAIN}", "to nobody", [CAROL], EVERYONE) == {CAROL}


def test_disabled_mailbox_neither_receives_nor_forwards(alice, db, mail_stack):
    save_forwarding(alice, [BOB], keep_copy=True)
    db.execute("INSERT INTO virtual_aliases (domain_id, source, destination) VALUES (1, %s, %s)", (f"@{DOMAIN}", CAROL))
    db.execute("UPDATE virtual_users SET active = false WHERE email = %s", (ALICE,))
    assert postmap(mail_stack, ALICE) == ALICE  # itself, then refused by the mailbox map
    assert postmap(mail_stack, ALICE, "pgsql-users.cf") == ""
    with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
        send_mail(mail_stack.smtp_port, ALICE, "to disabled")
    assert caught.value.recipients[ALICE][0] == 550
    time.sleep(0.5)
    assert not any(delivered(mail_stack, a, "to disabled") for a in EVERYONE)


def test_disabled_domain_neither_receives_nor_forwards(alice, db, mail_stack):
    save_forwarding(alice, ["friend@elsewhere.example"])
    db.execute("UPDATE virtual_domains SET active = false")
    assert postmap(mail_stack, DOMAIN, "pgsql-domains.cf") == ""
    assert postmap(mail_stack, ALICE) == ""
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send_mail(mail_stack.smtp_port, BOB, "to disabled domain")


def test_mixed_case_recipient_finds_lower_case_rows(alice, mail_stack):
    save_forwarding(alice, [BOB])
    assert deliver_and_collect(mail_stack, "ALICE@FWD.Example", "mixed case", [BOB], EVERYONE) == {BOB}


# --- found in review --------------------------------------------------------------------------------------


def test_loop_through_a_catch_all_is_refused(alice, db, mail_stack):
    db.execute("INSERT INTO virtual_aliases (domain_id, source, destination) VALUES (1, %s, %s)", (f"@{DOMAIN}", ALICE))
    response = save_forwarding(alice, [f"nobody@{DOMAIN}"])
    assert response.status_code == 400
    assert f"{ALICE} \u2192 nobody@{DOMAIN} \u2192 {ALICE}" in text(response)
    assert save_forwarding(alice, [f"nobody@{DOMAIN}"], keep_copy=True).status_code == 302


def test_personal_alias_that_closes_a_loop_is_refused(alice, db, mail_stack):
    assert save_forwarding(alice, [f"shop.alice@{DOMAIN}"]).status_code == 302  # unknown yet: mail would bounce
    response = add_alias(alice, "shop.alice")
    assert response.status_code == 400
    assert "round in a circle" in text(response)
    assert rows(db) == [(ALICE, f"shop.alice@{DOMAIN}")]


def test_dense_forwarding_with_copies_stays_fast(app, db):
    people = [f"p{n}@{DOMAIN}" for n in range(14)]
    for person in people:
        make_mailbox(db, person, PASSWORD)
    with db.transaction():
        for person in people:
            for other in people:
                db.execute("INSERT INTO virtual_aliases (domain_id, source, destination) VALUES (1, %s, %s)",
                           (person, other))
    client = signed_in_as(app, people[0])
    started = time.monotonic()
    response = save_forwarding(client, people[1:5])
    assert time.monotonic() - started < 2
    assert response.status_code == 302


def test_very_long_loop_is_refused(app, db):
    chain = [f"c{n}@{DOMAIN}" for n in range(40)]
    for person in chain:
        make_mailbox(db, person, PASSWORD)
    with db.transaction():
        for here, there in zip(chain[1:], chain[2:] + [chain[0]], strict=True):
            db.execute("INSERT INTO virtual_aliases (domain_id, source, destination) VALUES (1, %s, %s)",
                       (here, there))
    response = save_forwarding(signed_in_as(app, chain[0]), [chain[1]])
    assert response.status_code == 400 and "round in a circle" in text(response)


@pytest.mark.parametrize(("local_part", "message"), [
    ("bob+bank", "may not contain +"),
    ("postmaster+x", "may not contain +"),
    ("admin", "admin@fwd.example is reserved"),
    ("Administrator", "administrator@fwd.example is reserved"),
])
def test_personal_alias_cannot_shadow_others_or_validation_addresses(alice, db, mailboxes, local_part, message):
    response = add_alias(alice, local_part)
    assert response.status_code == 400
    assert message in text(response)
    assert rows(db) == []


def test_unchanged_save_leaves_adopted_rows_alone(alice, db):
    db.execute("INSERT INTO virtual_aliases (domain_id, source, destination) VALUES (1, %s, %s)", (ALICE, ALICE))
    response = save_forwarding(alice, "", keep_copy=True)
    assert response.status_code == 302
    assert "Nothing changed." in text(alice.get("/account/forwarding"))
    assert rows(db) == [(ALICE, ALICE)]
