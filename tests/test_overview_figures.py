"""The overview's kept figures (migration 0021) equal a count from scratch after any sequence of changes.

The changes are made the way their writers make them: Dovecot's quota_clone
upserts usage rows, the portal changes limits, activity and mailboxes, the purge
deletes usage rows, a superadmin deletes a domain.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from portal.queries import quota as quota_queries
from tests.mail import make_mailbox

MB = 1024 * 1024
ADDRESSES = ["a1@one.example", "a2@one.example", "a3@one.example", "b1@two.example", "b2@two.example"]
DOMAINS = ["one.example", "two.example"]
SIZES = st.sampled_from([0, 10 * MB, 79 * MB, 80 * MB, 94 * MB, 95 * MB, 100 * MB, 200 * MB])

steps = st.one_of(
    st.tuples(st.just("usage"), st.sampled_from(ADDRESSES), SIZES),
    st.tuples(st.just("mailbox_limit"), st.sampled_from(ADDRESSES), SIZES),
    st.tuples(st.just("domain_default"), st.sampled_from(DOMAINS), SIZES),
    st.tuples(st.just("domain_ceiling"), st.sampled_from(DOMAINS), SIZES),
    st.tuples(st.just("active"), st.sampled_from(ADDRESSES), st.booleans()),
    st.tuples(st.just("delete_mailbox"), st.sampled_from(ADDRESSES), st.none()),
    st.tuples(st.just("create_mailbox"), st.sampled_from(ADDRESSES), st.none()),
    st.tuples(st.just("forget_usage"), st.sampled_from(ADDRESSES), st.none()),
    st.tuples(st.just("delete_domain"), st.sampled_from(DOMAINS), st.none()),
)


def reset(db) -> None:
    db.execute("TRUNCATE virtual_aliases, virtual_users, virtual_domains, portal_quota_usage, portal_usage_levels,"
               " portal_mailbox_removals RESTART IDENTITY CASCADE")
    for address in ADDRESSES:
        make_mailbox(db, address, "figures test password 1")
    db.execute("UPDATE virtual_users SET quota_bytes = %s", (100 * MB,))


def perform(db, step) -> None:
    kind, target, value = step
    if kind == "usage":
        # As Dovecot's dict writes it: an upsert, whether or not the mailbox still exists.
        quota_queries.store_usage(db, target, value, 1)
    elif kind == "mailbox_limit":
        db.execute("UPDATE virtual_users SET quota_bytes = %s WHERE email = %s", (value, target))
    elif kind == "domain_default":
        db.execute("UPDATE virtual_domains SET default_quota_bytes = %s WHERE name = %s", (value, target))
    elif kind == "domain_ceiling":
        db.execute("UPDATE virtual_domains SET max_quota_bytes = %s WHERE name = %s", (value, target))
    elif kind == "active":
        db.execute("UPDATE virtual_users SET active = %s WHERE email = %s", (value, target))
    elif kind == "delete_mailbox":
        db.execute("DELETE FROM virtual_users WHERE email = %s", (target,))
    elif kind == "create_mailbox":
        if db.execute("SELECT 1 FROM virtual_users WHERE email = %s", (target,)).fetchone() is None:
            make_mailbox(db, target, "figures test password 1")
    elif kind == "forget_usage":
        db.execute("DELETE FROM portal_quota_usage WHERE email = %s", (target,))
    elif kind == "delete_domain":
        with db.transaction():
            db.execute("DELETE FROM virtual_users WHERE domain_id = (SELECT id FROM virtual_domains WHERE name = %s)",
                       (target,))
            db.execute("DELETE FROM virtual_domains WHERE name = %s", (target,))


def kept_figures(db) -> dict:
    rows = db.execute(
        """
        SELECT d.name, d.mailbox_count, d.disabled_count, coalesce(l.over_80, 0) AS over_80,
               coalesce(l.over_95, 0) AS over_95
          FROM virtual_domains d LEFT JOIN portal_usage_levels l ON l.domain_id = d.id ORDER BY d.name
        """
    ).fetchall()
    return {r["name"]: (r["mailbox_count"], r["disabled_count"], r["over_80"], r["over_95"]) for r in rows}


def counted_figures(db) -> dict:
    """The same figures counted from the mailboxes, their limits (the view Dovecot reads) and usage."""
    rows = db.execute(
        """
        SELECT d.name, count(u.id) AS mailboxes, count(u.id) FILTER (WHERE NOT u.active) AS disabled,
               count(u.id) FILTER (WHERE m.limit_bytes > 0 AND q.bytes * 100 >= m.limit_bytes * 80) AS over_80,
               count(u.id) FILTER (WHERE m.limit_bytes > 0 AND q.bytes * 100 >= m.limit_bytes * 95) AS over_95
          FROM virtual_domains d
          LEFT JOIN virtual_users u ON u.domain_id = d.id
          LEFT JOIN portal_mailbox_quota m ON m.mailbox_id = u.id
          LEFT JOIN portal_quota_usage q ON q.email = u.email
         GROUP BY d.name ORDER BY d.name
        """
    ).fetchall()
    return {r["name"]: (r["mailboxes"], r["disabled"], r["over_80"], r["over_95"]) for r in rows}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(steps, min_size=1, max_size=25))
def test_kept_figures_equal_a_fresh_count_after_any_changes(db, steps):
    reset(db)
    for step in steps:
        perform(db, step)
        assert kept_figures(db) == counted_figures(db), step
    # A usage row without a mailbox carries neither a domain nor a level.
    orphans = db.execute(
        "SELECT q.email, q.domain_id, q.level FROM portal_quota_usage q"
        " WHERE NOT EXISTS (SELECT 1 FROM virtual_users u WHERE u.email = q.email)"
    ).fetchall()
    assert all(r["domain_id"] is None and r["level"] == 0 for r in orphans)


def test_a_usage_write_that_keeps_its_level_writes_no_counter(db):
    """The usual delivery (a few bytes more, same level) leaves the counter row alone: no lock, no write."""
    reset(db)
    quota_queries.store_usage(db, "a1@one.example", 85 * MB, 3)
    before = db.execute("SELECT xmin::text AS version, over_80 FROM portal_usage_levels").fetchone()
    assert before["over_80"] == 1
    quota_queries.store_usage(db, "a1@one.example", 86 * MB, 4)
    assert db.execute("SELECT xmin::text AS version FROM portal_usage_levels").fetchone()["version"] == \
        before["version"]


def test_the_mail_reader_role_writes_usage_without_a_grant_on_the_counters(db, mail_stack):
    """Dovecot's role may write usage rows and nothing else; the counting runs with the portal's rights."""
    import psycopg
    import stack

    reset(db)
    with psycopg.connect(stack.database_url(mail_stack.db_name, user=stack.DB_MAIL_READER), autocommit=True) as reader:
        reader.execute("INSERT INTO portal_quota_usage (email, bytes, messages) VALUES (%s, %s, 1)"
                       " ON CONFLICT (email) DO UPDATE SET bytes = EXCLUDED.bytes", ("b1@two.example", 99 * MB))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute("UPDATE portal_usage_levels SET over_80 = 0")
    assert kept_figures(db)["two.example"] == (2, 0, 1, 1)


def test_a_temporary_view_of_the_writer_cannot_stand_in_for_the_limits(db, mail_stack):
    """The level is computed with the portal's rights: its search_path puts the writer's temporary schema last,
    so a temporary portal_mailbox_quota of Dovecot's login is never read in its place."""
    import psycopg
    import stack

    reset(db)
    with psycopg.connect(stack.database_url(mail_stack.db_name, user=stack.DB_MAIL_READER), autocommit=True) as reader:
        reader.execute("CREATE TEMP VIEW portal_mailbox_quota AS"
                       " SELECT 1 AS mailbox_id, 'b1@two.example'::text AS email, 1::bigint AS limit_bytes,"
                       " 1 AS domain_id")
        reader.execute("INSERT INTO portal_quota_usage (email, bytes, messages) VALUES ('b1@two.example', %s, 1)",
                       (10 * MB,))
    row = db.execute("SELECT level FROM portal_quota_usage WHERE email = 'b1@two.example'").fetchone()
    assert row["level"] == 0  # 10 MB of the real 100 MB limit


def test_a_limit_near_the_largest_number_does_not_fail_the_usage_write(db):
    reset(db)
    db.execute("UPDATE virtual_users SET quota_bytes = %s WHERE email = 'a1@one.example'", (2**63 - 1,))
    quota_queries.store_usage(db, "a1@one.example", 2**62, 1)
    assert db.execute("SELECT level FROM portal_quota_usage WHERE email = 'a1@one.example'").fetchone()["level"] == 0
