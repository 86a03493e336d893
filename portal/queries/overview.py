"""SQL for the administration overview: figures of an admin's scope, read from per-domain counters.

Every figure is a sum over the domain rows of the scope (counters kept by the
triggers of migrations 0009 and 0021), never a count of mailboxes, so the page
costs the same at 500k mailboxes as at 50 (bench/admin_lists.py measures it).
"""

from __future__ import annotations

from psycopg import sql

from .listing import DOMAIN_STATES
from .listing import NEAR_LIMIT_PERCENT

# Pending purges are counted up to here, then shown as "more than".
REMOVALS_COUNTED = 1000

_FIGURES = sql.SQL("""
    SELECT count(*) AS domains,
           coalesce(sum(d.mailbox_count), 0) AS mailboxes,
           coalesce(sum(d.alias_count), 0) AS aliases,
           coalesce(sum(d.disabled_count), 0) AS disabled,
           coalesce(sum(l.over_80), 0) AS over_80,
           coalesce(sum(l.over_95), 0) AS over_95,
           count(*) FILTER (WHERE {near_limits}) AS near_limits
      FROM virtual_domains d
      LEFT JOIN portal_usage_levels l ON l.domain_id = d.id
     WHERE %(scope)s::int[] IS NULL OR d.id = ANY(%(scope)s::int[])
""").format(near_limits=sql.SQL(DOMAIN_STATES["near-limits"]))

# The partial index of pending removals, walked soonest first; a domain admin's scope filters it.
_PENDING = sql.SQL("""
    FROM portal_mailbox_removals r
   WHERE r.purged_at IS NULL
     AND (%(domains)s::text[] IS NULL OR split_part(r.email, '@', 2) = ANY(%(domains)s::text[]))
""")
_SOONEST = sql.SQL("SELECT r.email, r.deleted_at, r.purge_after {} ORDER BY r.purge_after, r.id LIMIT %(limit)s")
_SOONEST = _SOONEST.format(_PENDING)
# In the index's order, so the count walks the pending rows' index, never the whole queue's history.
_COUNT = sql.SQL("SELECT count(*) AS n FROM (SELECT 1 {} ORDER BY r.purge_after LIMIT %(counted)s) c").format(_PENDING)


def figures(conn, scope: list[int] | None) -> dict:
    """Counts for the domains in ``scope`` (None: all): domains, mailboxes, aliases, disabled mailboxes,
    mailboxes over 80 % and 95 % of their limit, and domains near their mailbox or alias limit."""
    return conn.execute(_FIGURES, {"scope": scope, "near": NEAR_LIMIT_PERCENT}).fetchone()


def pending_removals(conn, domains: list[str] | None, limit: int = 5) -> tuple[list[dict], int]:
    """The deleted mailboxes of ``domains`` (None: all) whose mail waits for its purge, soonest first, and how
    many there are (counted up to REMOVALS_COUNTED + 1)."""
    params = {"domains": domains, "limit": limit, "counted": REMOVALS_COUNTED + 1}
    return conn.execute(_SOONEST, params).fetchall(), conn.execute(_COUNT, params).fetchone()["n"]
