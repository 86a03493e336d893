"""Paged lists for the admin pages: keyset pagination, prefix and substring search.

Every list is one query per page (counts come from counters on the domain row),
ordered by a key with an index behind it, and fetches one row more than the
page to know whether there is a next page, instead of counting the table.
"""

from __future__ import annotations

from dataclasses import dataclass

PAGE_SIZE = 50
MIN_SUBSTRING = 3


@dataclass(frozen=True)
class Search:
    """What to look for: text and whether it must start the key or only occur in it."""

    text: str = ""
    mode: str = "prefix"  # or "contains"

    def _escaped(self) -> str:
        return self.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")

    def params(self) -> dict:
        """LIKE patterns with LIKE's own wildcards escaped: a prefix one (btree in "C" order)
        and a substring one (trigram index); None where that filter is off."""
        if not self.text:
            return {"prefix": None, "contains": None}
        if self.mode == "contains":
            return {"prefix": None, "contains": f"%{self._escaped()}%"}
        return {"prefix": f"{self._escaped()}%", "contains": None}


@dataclass(frozen=True)
class Page:
    """One page of rows, and the key to ask for the next one (None: last page)."""

    rows: list[dict]
    next_after: str | None


def _page(rows: list[dict], key: str, limit: int) -> Page:
    if len(rows) > limit:
        rows = rows[:limit]
        return Page(rows, rows[-1][key])
    return Page(rows, None)


def domains(conn, scope: list[int] | None, search: Search, after: str | None, limit: int = PAGE_SIZE) -> Page:
    """Domains by name (``scope``: the ids allowed; None: all), with their mailbox and alias counts."""
    rows = conn.execute(
        """
        SELECT d.id, d.name, d.active, d.max_mailboxes, d.max_aliases,
               d.mailbox_count AS mailboxes, d.alias_count AS aliases
          FROM virtual_domains d
         WHERE (%(scope)s::int[] IS NULL OR d.id = ANY(%(scope)s::int[]))
           AND (%(prefix)s::text IS NULL OR d.name COLLATE "C" LIKE %(prefix)s)
           AND (%(contains)s::text IS NULL OR d.name LIKE %(contains)s)
           AND (%(after)s::text IS NULL OR d.name COLLATE "C" > %(after)s)
         ORDER BY d.name COLLATE "C"
         LIMIT %(limit)s
        """,
        {"scope": scope, **search.params(), "after": after, "limit": limit + 1},
    ).fetchall()
    return _page(rows, "name", limit)


def mailboxes(conn, domain_id: int, search: Search, after: str | None, limit: int = PAGE_SIZE) -> Page:
    """Mailboxes of a domain by address, with their limit and usage."""
    rows = conn.execute(
        """
        SELECT u.id, u.email, u.display_name, u.active, u.quota_bytes, u.created_at, m.limit_bytes,
               coalesce(q.bytes, 0) AS used_bytes, coalesce(q.messages, 0) AS messages
          FROM virtual_users u
          JOIN portal_mailbox_quota m ON m.mailbox_id = u.id
          LEFT JOIN portal_quota_usage q ON q.email = u.email
         WHERE u.domain_id = %(domain)s
           AND (%(prefix)s::text IS NULL OR u.email COLLATE "C" LIKE %(prefix)s)
           AND (%(contains)s::text IS NULL OR u.email LIKE %(contains)s)
           AND (%(after)s::text IS NULL OR u.email COLLATE "C" > %(after)s)
         ORDER BY u.email COLLATE "C"
         LIMIT %(limit)s
        """,
        {"domain": domain_id, **search.params(), "after": after, "limit": limit + 1},
    ).fetchall()
    return _page(rows, "email", limit)


def aliases(conn, domain_id: int, search: Search, after: str | None, limit: int = PAGE_SIZE) -> Page:
    """Alias addresses of a domain by address, each with its destinations."""
    rows = conn.execute(
        """
        SELECT a.source, array_agg(a.destination ORDER BY a.destination) AS destinations,
               bool_or(a.owner_id IS NOT NULL) AS personal,
               EXISTS (SELECT 1 FROM virtual_users u WHERE u.email = a.source) AS mailbox
          FROM virtual_aliases a
         WHERE a.domain_id = %(domain)s
           AND (%(prefix)s::text IS NULL OR a.source COLLATE "C" LIKE %(prefix)s)
           AND (%(contains)s::text IS NULL OR a.source LIKE %(contains)s)
           AND (%(after)s::text IS NULL OR a.source COLLATE "C" > %(after)s)
         GROUP BY a.source COLLATE "C", a.source
         ORDER BY a.source COLLATE "C"
         LIMIT %(limit)s
        """,
        {"domain": domain_id, **search.params(), "after": after, "limit": limit + 1},
    ).fetchall()
    return _page(rows, "source", limit)
