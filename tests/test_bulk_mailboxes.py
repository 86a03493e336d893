"""Bulk actions on the mailbox list: a review page that changes nothing, then one transaction, one audit row per
mailbox, all or nothing, within the admin's scope (asked again under the lock), proven against the real Dovecot."""

from __future__ import annotations

import re
import threading

import psycopg
import pytest
from imapclient.exceptions import LoginError

from portal.access import Actor
from portal.rules import bulk_mailboxes as bulk_rules
from tests.conftest import csrf_token
from tests.conftest import grant_and_sign_in
from tests.conftest import new_client_ip
from tests.mail import imap_login
from tests.mail import make_mailbox
from tests.test_quota import doveadm_quota

# Touches Dovecot: scripts/test runs it on the other Debian release too.
pytestmark = pytest.mark.mail_server

PASSWORD = "a long enough test password 6"
MB = 1024 * 1024
LIST = "/admin/domains/a.example/mailboxes"
BULK = "/admin/domains/a.example/bulk"
MAILBOXES = ["ann@a.example", "ben@a.example", "cat@a.example"]


@pytest.fixture
def world(app, db):
    for address in ("ada@a.example", *MAILBOXES, "bob@b.example", "root@hq.example"):
        make_mailbox(db, address, PASSWORD)
    return grant_and_sign_in(app, [("domain-admin", "ada@a.example", "a.example"), ("superadmin", "root@hq.example")],
                             {"ada": "ada@a.example", "root": "root@hq.example"}, PASSWORD)


def state(db) -> dict:
    """Everything a bulk action could change."""
    return {
        "mailboxes": db.execute("SELECT email, active, quota_bytes FROM virtual_users ORDER BY email").fetchall(),
        "removals": db.execute("SELECT email FROM portal_mailbox_removals ORDER BY email").fetchall(),
        "audit": db.execute("SELECT count(*) AS n FROM portal_audit_log").fetchone()["n"],
    }


def post(client, addresses: list[str], action: str, quota: str = "", confirmed: bool = False):
    data = {"csrf_token": csrf_token(client, LIST), "action": action, "quota": quota, "mailbox": addresses}
    if confirmed:
        data["confirmed"] = "yes"
    return client.post(BULK, data=data)


def test_the_list_offers_a_checkbox_per_mailbox_and_the_actions(world):
    page = world["ada"].get(LIST).get_data(as_text=True)
    for address in MAILBOXES:
        assert f'name="mailbox" value="{address}"' in page
    assert f'action="{BULK}"' in page
    for action in ("disable", "enable", "limit", "delete"):
        assert f'value="{action}"' in page


def test_the_review_page_lists_the_change_and_changes_nothing(world, db):
    before = state(db)
    review = post(world["ada"], ["ann@a.example", "ben@a.example"], "limit", "2 GB")
    text = review.get_data(as_text=True)
    assert review.status_code == 200
    assert "These mailboxes will change" in text and "ann@a.example" in text and "2 GB" in text
    # The confirmation carries exactly the mailboxes that can change, and the action.
    assert re.findall(r'name="mailbox" value="([^"]+)"', text) == ["ann@a.example", "ben@a.example"]
    assert 'name="confirmed" value="yes"' in text
    assert state(db) == before


def test_a_confirmed_change_is_one_transaction_with_one_audit_row_per_mailbox(world, db, mail_stack):
    response = post(world["ada"], MAILBOXES, "disable", confirmed=True)
    assert response.status_code == 302 and response.headers["Location"] == LIST
    rows = db.execute("SELECT email, active FROM virtual_users WHERE email = ANY(%s) ORDER BY email",
                      (MAILBOXES,)).fetchall()
    assert [r["active"] for r in rows] == [False, False, False]
    audit = db.execute("SELECT actor, actor_role, action, target, summary FROM portal_audit_log"
                       " WHERE action = 'mailbox.update' ORDER BY target").fetchall()
    assert [a["target"] for a in audit] == MAILBOXES
    assert all(a["actor"] == "ada@a.example" and a["actor_role"] == "domain_admin" for a in audit)
    assert all(a["summary"]["active"] == {"before": True, "after": False} for a in audit)
    # Dovecot refuses them now.
    for address in MAILBOXES:
        with pytest.raises(LoginError):
            imap_login(mail_stack.imap_port, address, PASSWORD, client_ip=new_client_ip())
    # And enabling them again lets them in.
    assert post(world["ada"], MAILBOXES, "enable", confirmed=True).status_code == 302
    imap_login(mail_stack.imap_port, "ann@a.example", PASSWORD, client_ip=new_client_ip()).logout()


def test_a_new_limit_is_what_dovecot_enforces(world, db, mail_stack):
    assert post(world["ada"], ["ann@a.example", "ben@a.example"], "limit", "3 MB", confirmed=True).status_code == 302
    assert doveadm_quota(mail_stack, "ann@a.example")["STORAGE"][1] == "3072"  # KiB, as Dovecot enforces it
    assert db.execute("SELECT quota_bytes FROM virtual_users WHERE email = 'cat@a.example'").fetchone()[
        "quota_bytes"] == 0


def test_bulk_delete_keeps_the_mail_for_the_grace_period(world, db):
    response = post(world["ada"], ["ann@a.example", "ben@a.example"], "delete")
    assert "Their stored mail is kept for" in response.get_data(as_text=True)
    assert post(world["ada"], ["ann@a.example", "ben@a.example"], "delete", confirmed=True).status_code == 302
    assert [r["email"] for r in state(db)["removals"]] == ["ann@a.example", "ben@a.example"]
    assert db.execute("SELECT count(*) AS n FROM portal_audit_log WHERE action = 'mailbox.delete'").fetchone()[
        "n"] == 2


def test_one_refused_mailbox_refuses_the_whole_change(world, db):
    """The admin's own mailbox cannot be disabled: the review says so and offers the others; a confirmation
    forged to include it changes nothing at all."""
    review = post(world["ada"], ["ada@a.example", "ann@a.example"], "disable").get_data(as_text=True)
    assert "These mailboxes cannot be changed so" in review
    assert re.findall(r'name="mailbox" value="([^"]+)"', review) == ["ann@a.example"]
    before = state(db)
    forged = post(world["ada"], ["ada@a.example", "ann@a.example"], "disable", confirmed=True)
    assert forged.status_code == 409 and "Nothing was changed" in forged.get_data(as_text=True)
    assert state(db) == before


def test_mailboxes_of_another_domain_are_out_of_reach(world, db):
    """Addresses of b.example sent to a.example's bulk route, or to b.example's own: not this admin's."""
    before = state(db)
    response = post(world["ada"], ["bob@b.example", "ann@a.example"], "delete", confirmed=True)
    assert response.status_code == 409 and "is not a mailbox of this domain" in response.get_data(as_text=True)
    token = csrf_token(world["ada"], LIST)
    other = world["ada"].post("/admin/domains/b.example/bulk",
                              data={"csrf_token": token, "action": "delete", "mailbox": ["bob@b.example"],
                                    "confirmed": "yes"})
    assert other.status_code == 404
    assert state(db) == before


def test_the_scope_is_asked_again_under_the_lock(app, world, db):
    """A domain admin who loses the role between the page and the rule changes nothing."""
    ada = db.execute("SELECT id, domain_id FROM virtual_users WHERE email = 'ada@a.example'").fetchone()
    actor, domain_id = Actor("ada@a.example", "192.0.2.1", ada["id"]), ada["domain_id"]
    db.execute("DELETE FROM portal_roles WHERE user_id = (SELECT id FROM virtual_users WHERE email = 'ada@a.example')")
    before = state(db)
    with app.app_context(), pytest.raises(bulk_rules.BulkRefused) as refused:
        from portal.db import get_db

        bulk_rules.change_mailboxes(get_db(), actor, domain_id=domain_id, addresses=MAILBOXES,
                                    change=bulk_rules.BulkChange("delete"), mail_root=app.config["MAIL_ROOT"],
                                    grace_days=30)
    assert all(o.problem for o in refused.value.outcomes)
    assert state(db) == before


@pytest.mark.parametrize(("data", "message"), [
    ({"action": "disable", "mailbox": []}, "Select at least one mailbox."),
    ({"action": "explode", "mailbox": ["ann@a.example"]}, "Not a valid choice"),
    ({"action": "limit", "quota": "lots", "mailbox": ["ann@a.example"]}, "Write a size such as"),
    ({"action": "disable", "mailbox": [f"u{n}@a.example" for n in range(201)]}, "Select at most 200"),
])
def test_bad_input_is_a_clear_error_and_changes_nothing(world, db, data, message):
    before = state(db)
    response = world["ada"].post(BULK, data={"csrf_token": csrf_token(world["ada"], LIST), **data})
    assert response.status_code == 400 and message in response.get_data(as_text=True)
    assert state(db) == before


def test_without_a_csrf_token_nothing_happens(world, db):
    before = state(db)
    response = world["ada"].post(BULK, data={"action": "delete", "mailbox": MAILBOXES, "confirmed": "yes"})
    assert response.status_code == 400
    assert state(db) == before


def test_two_bulk_changes_at_once_do_not_deadlock(app, world, db):
    """Rows are locked in id order by every multi-mailbox change: two opposite selections both finish."""
    domain_id = db.execute("SELECT id FROM virtual_domains WHERE name = 'a.example'").fetchone()["id"]
    root_id = db.execute("SELECT id FROM virtual_users WHERE email = 'root@hq.example'").fetchone()["id"]
    root = Actor("root@hq.example", "192.0.2.9", root_id)
    errors = []

    def run(addresses, action):
        try:
            with app.app_context():
                from portal.db import get_db

                bulk_rules.change_mailboxes(get_db(), root, domain_id=domain_id,
                                            addresses=addresses, change=bulk_rules.BulkChange(action),
                                            mail_root=app.config["MAIL_ROOT"], grace_days=30)
        except Exception as exc:  # noqa: BLE001 - the test reports whatever went wrong
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(list(reversed(MAILBOXES)) if n % 2 else MAILBOXES,
                                                  "disable" if n % 2 else "enable")) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []


def test_a_failure_at_the_last_mailbox_leaves_every_mailbox_as_it_was(app, world, db):
    """The database fails on the last mailbox's audit row: the ones before it are not deleted either."""
    root_id = db.execute("SELECT id FROM virtual_users WHERE email = 'root@hq.example'").fetchone()["id"]
    domain_id = db.execute("SELECT id FROM virtual_domains WHERE name = 'a.example'").fetchone()["id"]
    db.execute("""
        CREATE FUNCTION test_fail_last_delete() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.action = 'mailbox.delete' AND NEW.target = 'cat@a.example' THEN
                RAISE EXCEPTION 'disk full (test)';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER test_fail_last_delete BEFORE INSERT ON portal_audit_log
            FOR EACH ROW EXECUTE FUNCTION test_fail_last_delete();
    """)
    try:
        before = state(db)
        with app.app_context(), pytest.raises(psycopg.errors.RaiseException):
            from portal.db import get_db

            bulk_rules.change_mailboxes(get_db(), Actor("root@hq.example", "192.0.2.9", root_id),
                                        domain_id=domain_id, addresses=MAILBOXES,
                                        change=bulk_rules.BulkChange("delete"), mail_root=app.config["MAIL_ROOT"],
                                        grace_days=30)
        assert state(db) == before
    finally:
        db.execute("DROP TRIGGER IF EXISTS test_fail_last_delete ON portal_audit_log;"
                   " DROP FUNCTION IF EXISTS test_fail_last_delete()")


def test_switching_language_on_the_review_page_comes_back_to_the_list(world):
    """The switch sends the reader back to the page's address by GET: for the review, that is the list."""
    response = world["ada"].get(BULK)
    assert response.status_code == 302 and response.headers["Location"] == LIST


def test_a_limit_set_before_the_ceiling_was_lowered_does_not_block_disabling(world, db):
    db.execute("UPDATE virtual_users SET quota_bytes = %s WHERE email = 'ann@a.example'", (500 * MB,))
    db.execute("UPDATE virtual_domains SET max_quota_bytes = %s WHERE name = 'a.example'", (100 * MB,))
    assert post(world["ada"], ["ann@a.example", "ben@a.example"], "disable", confirmed=True).status_code == 302
    assert db.execute("SELECT active FROM virtual_users WHERE email = 'ann@a.example'").fetchone()["active"] is False
    # A new limit above the ceiling is still refused, for a disabled mailbox too.
    response = post(world["ada"], ["ann@a.example"], "limit", "200 MB", confirmed=True)
    assert response.status_code == 409 and "The most this domain allows" in response.get_data(as_text=True)
