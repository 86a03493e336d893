"""The administration overview and the lists it leads to: figures of the admin's scope, each linking to the
filtered list, and those lists holding exactly the mailboxes or domains in that state."""

from __future__ import annotations

import html
import re

import pytest

from portal.queries import quota as quota_queries
from tests.conftest import grant_and_sign_in
from tests.mail import make_mailbox

PASSWORD = "a long enough test password 4"
MB = 1024 * 1024


@pytest.fixture
def world(app, db):
    """two domains: a.example (admin ada, six mailboxes at various levels) and b.example (one nearly full)."""
    for address in ("ada@a.example", "full@a.example", "almost@a.example", "half@a.example", "off@a.example",
                    "none@a.example", "bob@b.example", "root@hq.example"):
        make_mailbox(db, address, PASSWORD)
    db.execute("UPDATE virtual_users SET quota_bytes = %s", (100 * MB,))
    db.execute("UPDATE virtual_users SET quota_bytes = 0 WHERE email = 'none@a.example'")  # no limit at all
    db.execute("UPDATE virtual_users SET active = false WHERE email = 'off@a.example'")
    db.execute("UPDATE virtual_domains SET max_mailboxes = 6 WHERE name = 'a.example'")  # 6 of 6: at its limit
    for address, used in (("full@a.example", 97), ("almost@a.example", 85), ("half@a.example", 50),
                          ("none@a.example", 5000), ("bob@b.example", 96)):
        quota_queries.store_usage(db, address, used * MB, 10)
    return grant_and_sign_in(app, [("domain-admin", "ada@a.example", "a.example"), ("superadmin", "root@hq.example")],
                             {"ada": "ada@a.example", "root": "root@hq.example"}, PASSWORD)


def figures(page: str) -> dict[str, int]:
    """The overview's tiles: label -> count."""
    found = re.findall(r'<span class="figure-count">([\d,]+)</span>\s*<span class="figure-label">([^<]+)</span>', page)
    return {html.unescape(label): int(count.replace(",", "")) for count, label in found}


def domain_rows(page: str) -> list[str]:
    return re.findall(r'<td><a href="/admin/domains/[^/]+/mailboxes">([^<]+)</a>', page)


def listed(page: str) -> list[str]:
    return re.findall(r'<input class="form-check-input" type="checkbox" name="mailbox" value="([^"]+)"', page)


def test_the_domain_admin_sees_the_figures_of_their_domain_only(world):
    page = world["ada"].get("/admin/").get_data(as_text=True)
    assert figures(page) == {
        "domains": 1, "mailboxes": 6, "aliases": 0, "mailboxes at least 95 % full": 1,
        "mailboxes at least 80 % full": 2, "disabled mailboxes": 1,
        "domains near their mailbox or alias limit": 1, "deleted mailboxes waiting for their purge": 0,
    }
    # One domain in scope: each figure leads straight to its filtered mailbox list.
    assert 'href="/admin/domains/a.example/mailboxes?state=over-95"' in page
    assert 'href="/admin/domains/a.example/mailboxes?state=disabled"' in page
    assert "b.example" not in page and "bob@" not in page


def test_the_superadmin_sees_every_domain_and_is_led_to_the_domains_concerned(world):
    page = world["root"].get("/admin/").get_data(as_text=True)
    found = figures(page)
    assert (found["domains"], found["mailboxes"], found["mailboxes at least 95 % full"],
            found["mailboxes at least 80 % full"]) == (3, 8, 2, 3)
    assert 'href="/admin/domains?state=over-95"' in page
    assert domain_rows(world["root"].get("/admin/domains?state=over-95").get_data(as_text=True)) == [
        "a.example", "b.example"]
    assert domain_rows(world["root"].get("/admin/domains?state=near-limits").get_data(as_text=True)) == ["a.example"]
    assert domain_rows(world["root"].get("/admin/domains?state=disabled").get_data(as_text=True)) == ["a.example"]


@pytest.mark.parametrize(("state", "expected"), [
    ("", ["ada@a.example", "almost@a.example", "full@a.example", "half@a.example", "none@a.example",
          "off@a.example"]),
    ("disabled", ["off@a.example"]),
    ("over-80", ["almost@a.example", "full@a.example"]),
    ("over-95", ["full@a.example"]),
])
def test_each_state_lists_exactly_its_mailboxes(world, state, expected):
    page = world["ada"].get(f"/admin/domains/a.example/mailboxes?state={state}").get_data(as_text=True)
    assert listed(page) == expected


def test_a_usage_state_offers_address_order_only_and_keeps_paging_within_the_state(world, db):
    # A sort of the full list carried over in the link falls back to the state's own order, not an error.
    response = world["ada"].get("/admin/domains/a.example/mailboxes?state=over-80&sort=newest")
    assert response.status_code == 200 and listed(response.get_data(as_text=True)) == [
        "almost@a.example", "full@a.example"]
    page = world["ada"].get("/admin/domains/a.example/mailboxes?state=over-80&sort=address-desc")
    assert listed(page.get_data(as_text=True)) == ["full@a.example", "almost@a.example"]
    # Sixty more nearly full mailboxes: the next page link keeps the state.
    domain_id = db.execute("SELECT id FROM virtual_domains WHERE name = 'a.example'").fetchone()["id"]
    db.execute("UPDATE virtual_domains SET max_mailboxes = 0 WHERE id = %s", (domain_id,))
    for n in range(60):
        db.execute("INSERT INTO virtual_users (domain_id, email, password, quota_bytes) VALUES (%s, %s, 'x', %s)",
                   (domain_id, f"z{n:02d}@a.example", 100 * MB))
        quota_queries.store_usage(db, f"z{n:02d}@a.example", 90 * MB, 1)
    first = world["ada"].get("/admin/domains/a.example/mailboxes?state=over-80").get_data(as_text=True)
    after = re.search(r'href="([^"]*after=[^"]*)"', first).group(1)
    assert "state=over-80" in after
    second = world["ada"].get(html.unescape(after)).get_data(as_text=True)
    assert len(listed(first)) == 50 and len(listed(second)) == 12
    assert set(listed(first)).isdisjoint(listed(second))


def test_an_unknown_state_is_a_clear_400(world):
    response = world["ada"].get("/admin/domains/a.example/mailboxes?state=everything")
    assert response.status_code == 400 and "Not a valid choice" in response.get_data(as_text=True)
    assert world["ada"].get("/admin/domains?state=x").status_code == 400


def test_the_overview_follows_a_change_of_limit_at_once(world, db):
    """Figures are kept, not recounted: a larger domain default empties "over 80 %" on the next view."""
    db.execute("UPDATE virtual_users SET quota_bytes = 0 WHERE domain_id = (SELECT id FROM virtual_domains"
               " WHERE name = 'a.example')")
    db.execute("UPDATE virtual_domains SET default_quota_bytes = %s WHERE name = 'a.example'", (10_000 * MB,))
    found = figures(world["ada"].get("/admin/").get_data(as_text=True))
    assert found["mailboxes at least 80 % full"] == 0 and found["mailboxes at least 95 % full"] == 0


def test_pending_purges_are_listed_with_their_dates_in_scope_only(world, app, db):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["mailbox", "delete", "half@a.example", "--yes"]).exit_code == 0
    assert runner.invoke(args=["mailbox", "delete", "bob@b.example", "--yes"]).exit_code == 0
    page = world["ada"].get("/admin/").get_data(as_text=True)
    assert figures(page)["deleted mailboxes waiting for their purge"] == 1
    assert "half@a.example" in page and "bob@b.example" not in page
    removals = world["ada"].get("/admin/removals").get_data(as_text=True)
    assert "half@a.example" in removals and "bob@b.example" not in removals
    kept = db.execute("SELECT purge_after FROM portal_mailbox_removals WHERE email = 'half@a.example'").fetchone()
    assert kept["purge_after"].strftime("%Y-%m-%d") in removals
    everything = world["root"].get("/admin/removals").get_data(as_text=True)
    assert "half@a.example" in everything and "bob@b.example" in everything
    # The deleted mailbox's usage no longer counts anywhere.
    assert figures(world["root"].get("/admin/").get_data(as_text=True))["mailboxes at least 95 % full"] == 1


def test_the_last_changes_are_the_scopes_own(world, app):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["mailbox", "delete", "bob@b.example", "--yes"]).exit_code == 0
    assert runner.invoke(args=["mailbox", "delete", "half@a.example", "--yes"]).exit_code == 0
    page = world["ada"].get("/admin/").get_data(as_text=True)
    changes = page[page.index('id="changes-heading"'):]
    assert "half@a.example" in changes and "bob@b.example" not in changes


def test_the_removals_list_pages_through_the_queue(world, db):
    db.execute("INSERT INTO portal_mailbox_removals (email, maildir, purge_after)"
               " SELECT 'old' || lpad(n::text, 2, '0') || '@a.example', '', now() + n * interval '1 hour'"
               " FROM generate_series(1, 60) n")
    first = world["ada"].get("/admin/removals").get_data(as_text=True)
    after = re.search(r'href="(/admin/removals\?after=[^"]*)"', first).group(1)
    second = world["ada"].get(html.unescape(after)).get_data(as_text=True)
    shown = re.findall(r"<td>(old\d\d@a\.example)</td>", first) + re.findall(r"<td>(old\d\d@a\.example)</td>",
                                                                           second)
    assert shown == [f"old{n:02d}@a.example" for n in range(1, 61)]
    assert world["ada"].get("/admin/removals?after=nonsense").status_code == 400
