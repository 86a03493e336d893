"""Paged lists for the admin pages: keyset pagination, prefix and substring search, sorting.

Every list is one query per page (counts come from counters on the domain row),
ordered by one of a fixed set of sort orders each with an index behind it, and
fetches one row more than the page to know whether there is a next page,
instead of counting the table. The cursor of the next page is the sort key of
the last row shown, so page 1,000 costs what page 1 costs.

Facts about each row that live in other tables (is this alias address also a
mailbox, its size limit and usage, does it hold a role) are looked up after the
LIMIT, for the rows of the page only, through a LATERAL subquery with its own
LIMIT: PostgreSQL cannot flatten that into a join, so it probes a unique index
once per row instead of choosing, by the shape of the data, to hash a whole
table (tests/queries/test_list_plans.py holds every list to that).
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime

from psycopg import sql
from psycopg.pq import TransactionStatus

PAGE_SIZE = 50
MIN_SUBSTRING = 3


class InvalidCursor(ValueError):
    """A page cursor that this list did not make."""


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

    def has_trigram(self) -> bool:
        """Whether the text holds a trigram the index can look up: three letters or digits in a row
        (pg_trgm splits words at everything else, and finds nothing shorter in a LIKE pattern)."""
        return re.search(r"[^\W_]{3}", self.text) is not None


@dataclass(frozen=True)
class Sort:
    """One allowed order of a list: the SQL key columns (all one direction) and the row fields they come from."""

    name: str
    label: str
    columns: tuple[str, ...]  # SQL expressions; constants of this module only, never user input
    fields: tuple[str, ...]  # the row fields holding those values, for the cursor
    types: tuple[str, ...]  # "text", "int" or "time"
    descending: bool = False

    def order_by(self) -> sql.Composed:
        direction = sql.SQL(" DESC" if self.descending else "")
        return sql.SQL(", ").join(sql.SQL(c) + direction for c in self.columns)

    def after(self, cursor: list | None) -> tuple[sql.Composable, dict]:
        """The keyset condition (rows strictly past the cursor in this order) and its parameters."""
        if cursor is None:
            return sql.SQL("true"), {}
        casts = {"text": "::text", "int": "::bigint", "time": "::timestamptz"}
        left = sql.SQL(", ").join(sql.SQL(c) for c in self.columns)
        right = sql.SQL(", ").join(
            sql.Placeholder(f"after_{i}") + sql.SQL(casts[t]) for i, t in enumerate(self.types)
        )
        params = {f"after_{i}": value for i, value in enumerate(cursor)}
        return sql.SQL("({}) {} ({})").format(left, sql.SQL("<" if self.descending else ">"), right), params

    def cursor_of(self, row: dict) -> str:
        """The opaque text that asks for the rows after ``row``."""
        values = [row[f].isoformat() if isinstance(row[f], datetime) else row[f] for f in self.fields]
        return json.dumps(values, separators=(",", ":"))

    def parse_cursor(self, text: str | None) -> list | None:
        """Read a cursor made by ``cursor_of``; raise InvalidCursor for anything else."""
        if not text:
            return None
        # A cursor holds at most three short values; anything longer was not made here
        # (and deeply nested JSON would exhaust the parser's recursion).
        if len(text) > MAX_CURSOR or not text.startswith("["):
            raise InvalidCursor(text)
        try:
            values = json.loads(text)
        except (ValueError, RecursionError):
            raise InvalidCursor(text) from None
        if not isinstance(values, list) or len(values) != len(self.types):
            raise InvalidCursor(text)
        return [_cursor_value(value, kind, text) for value, kind in zip(values, self.types, strict=True)]


MAX_CURSOR = 600
_BIGINT = 2**63


def _cursor_value(value, kind: str, text: str):
    """One value of a cursor, checked to be what PostgreSQL will accept for its column."""
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool) and -_BIGINT <= value < _BIGINT:
            return value
        raise InvalidCursor(text)
    if not (isinstance(value, str) and value.isprintable() and len(value) <= 254):
        raise InvalidCursor(text)
    if kind == "time":
        # Python reads forms PostgreSQL does not (week dates, offsets past 15:59):
        # pass on the parsed moment, never the text.
        try:
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is None:
                raise InvalidCursor(text)
            # Year 1 with a positive offset is before the first moment Python can hold in UTC.
            return moment.astimezone(UTC)
        except (ValueError, OverflowError):
            raise InvalidCursor(text) from None
    return value


def _sorts(*sorts: Sort) -> dict[str, Sort]:
    return {s.name: s for s in sorts}


# The allow-lists. The first of each is the default; each has an index behind it.
DOMAIN_SORTS = _sorts(
    Sort("name", "name, A to Z", ('d.name COLLATE "C"',), ("name",), ("text",)),
    Sort("name-desc", "name, Z to A", ('d.name COLLATE "C"',), ("name",), ("text",), descending=True),
    # Counters of at most some 10k domain rows: sorted in memory, measured in docs/benchmarks.md.
    Sort("mailboxes", "most mailboxes", ("d.mailbox_count", "d.id"), ("mailboxes", "id"), ("int", "int"), True),
    Sort("newest", "newest first", ("d.created_at", "d.id"), ("created_at", "id"), ("time", "int"), True),
)
MAILBOX_SORTS = _sorts(
    Sort("address", "address, A to Z", ('u.email COLLATE "C"',), ("email",), ("text",)),
    Sort("address-desc", "address, Z to A", ('u.email COLLATE "C"',), ("email",), ("text",), descending=True),
    Sort("newest", "newest first", ("u.created_at", "u.id"), ("created_at", "id"), ("time", "int"), True),
    Sort("oldest", "oldest first", ("u.created_at", "u.id"), ("created_at", "id"), ("time", "int")),
)
ALIAS_SORTS = _sorts(
    Sort("address", "address, A to Z", ('a.source COLLATE "C"',), ("source",), ("text",)),
    Sort("address-desc", "address, Z to A", ('a.source COLLATE "C"',), ("source",), ("text",), descending=True),
)
ROLE_SORTS = _sorts(
    Sort("address", "address, A to Z", ('u.email COLLATE "C"', "r.id"), ("email", "id"), ("text", "int")),
    Sort("role", "role", ("r.role", 'u.email COLLATE "C"', "r.id"), ("role", "email", "id"), ("text", "text", "int")),
    Sort("newest", "newest first", ("r.created_at", "r.id"), ("created_at", "id"), ("time", "int"), True),
)


@dataclass(frozen=True)
class Page:
    """One page of rows, and the cursor that asks for the next one (None: last page)."""

    rows: list[dict]
    next_after: str | None


def _page(conn, query: str, params: dict, sort: Sort, after: str | None, limit: int, **parts: sql.Composable) -> Page:
    condition, after_params = sort.after(sort.parse_cursor(after))
    statement = sql.SQL(query).format(after=condition, order=sort.order_by(), **parts)
    return _fetch_page(conn, statement, {**params, **after_params}, sort, limit)


def _fetch_page(conn, statement: sql.Composable, params: dict, sort: Sort, limit: int) -> Page:
    # Never a prepared statement: its generic plan cannot drop the filters that are
    # off ("%(prefix)s IS NULL OR ...") and costs 70 ms instead of 1 on a large
    # domain once psycopg starts preparing, at the fifth call (docs/benchmarks.md).
    rows = conn.execute(statement, {**params, "limit": limit + 1}, prepare=False).fetchall()
    if len(rows) > limit:
        rows = rows[:limit]
        return Page(rows, sort.cursor_of(rows[-1]))
    return Page(rows, None)


@dataclass(frozen=True)
class _Rows:
    """Where a list's rows come from, before facts from other tables are added to the page.

    Every field is a constant of this module, never user input.
    """

    columns: str  # what the page needs of each row
    table: str  # the table and its alias
    alias: str
    scope: str  # which rows belong to the list at all (the domain, the admin's domains)
    key: str  # the column searched and sorted on
    group: str = ""  # GROUP BY, where one list row stands for several table rows


# The rows of a page, in the sort order: a prefix search walks the sort index from
# the prefix on; no search walks it from the cursor.
_ROWS = sql.SQL("""
    SELECT {columns} FROM {table}
     WHERE {scope}
       AND (%(prefix)s::text IS NULL OR {key} COLLATE "C" LIKE %(prefix)s)
       AND (%(contains)s::text IS NULL OR {key} LIKE %(contains)s)
       AND {after}
     {group}
     ORDER BY {order}
     LIMIT %(limit)s
""")
# A substring search, first try: the next WALK_WINDOW rows in the sort order,
# then the search among them. Where matches are common, the page is there.
_ROWS_WALKED = sql.SQL("""
    SELECT * FROM (SELECT {columns} FROM {table} WHERE {scope} AND {after} ORDER BY {order} LIMIT %(window)s) {alias}
     WHERE {key} LIKE %(contains)s
     {group}
     ORDER BY {order}
     LIMIT %(limit)s
""")
WALK_WINDOW = 1000
# The second try, where matches are rare or bunched together later in the order:
# every match from the trigram index, sorted (_matches_first). Left to itself the
# planner may walk the sort index instead and filter, reading every row before the
# bunch (40 ms at 500k mailboxes), or scan the whole table when it guesses the
# term is common; the first try has already handled the common case.


def _search_page(conn, query: str, rows: _Rows, params: dict, search: Search, sort: Sort, after: str | None,
                 limit: int) -> Page:
    """A page of a list whose rows come from ``rows``; ``query`` adds their facts around ``{rows}``."""
    condition, after_params = sort.after(sort.parse_cursor(after))
    params = {**params, **search.params(), **after_params}
    parts = {"columns": sql.SQL(rows.columns), "table": sql.SQL(rows.table), "alias": sql.SQL(rows.alias),
             "scope": sql.SQL(rows.scope), "key": sql.SQL(rows.key), "group": sql.SQL(rows.group),
             "after": condition, "order": sort.order_by()}

    def statement(rows_sql: sql.SQL) -> sql.Composed:
        return sql.SQL(query).format(rows=rows_sql.format(**parts), order=sort.order_by())

    if params["contains"] is None:
        return _fetch_page(conn, statement(_ROWS), params, sort, limit)
    page = _fetch_page(conn, statement(_ROWS_WALKED), {**params, "window": WALK_WINDOW}, sort, limit)
    if page.next_after is not None:
        return page
    if not search.has_trigram():
        return _fetch_page(conn, statement(_ROWS), params, sort, limit)  # the index cannot narrow it down
    with _matches_first(conn):
        return _fetch_page(conn, statement(_ROWS), params, sort, limit)


@contextmanager
def _matches_first(conn):
    """Have the planner take every match from the trigram index, in a transaction of its own.

    The settings end with that transaction. Inside a caller's transaction they would
    outlive the query, so there the planner is left to choose (no page view runs a
    list inside one).
    """
    if conn.info.transaction_status != TransactionStatus.IDLE:
        yield
        return
    with conn.transaction():
        conn.execute("SELECT set_config('enable_seqscan', 'off', true), set_config('enable_indexscan', 'off', true),"
                     " set_config('enable_indexonlyscan', 'off', true)")
        yield


# The states a domain list can be narrowed to, each a condition on the domain's own
# counters (kept by triggers; at most some 10k domain rows to read).
DOMAIN_STATES = {
    "": "true",
    "near-limits": "((d.max_mailboxes > 0 AND d.mailbox_count * 100 >= d.max_mailboxes * %(near)s)"
                   " OR (d.max_aliases > 0 AND d.alias_count * 100 >= d.max_aliases * %(near)s))",
    "disabled": "d.disabled_count > 0",
    "over-80": "coalesce(l.over_80, 0) > 0",
    "over-95": "coalesce(l.over_95, 0) > 0",
}
NEAR_LIMIT_PERCENT = 90  # a domain is near its limit from this share of it on


def domains(conn, scope: list[int] | None, search: Search, after: str | None = None,
            sort: Sort = DOMAIN_SORTS["name"], limit: int = PAGE_SIZE, state: str = "") -> Page:
    """Domains (``scope``: the ids allowed; None: all) in ``state`` (a key of DOMAIN_STATES), with their
    mailbox, alias and disabled counts and their mailboxes over 80 % and 95 % of their limit."""
    return _page(conn, """
        SELECT d.id, d.name, d.active, d.max_mailboxes, d.max_aliases, d.created_at,
               d.mailbox_count AS mailboxes, d.alias_count AS aliases, d.disabled_count AS disabled,
               coalesce(l.over_80, 0) AS over_80, coalesce(l.over_95, 0) AS over_95
          FROM virtual_domains d
          LEFT JOIN portal_usage_levels l ON l.domain_id = d.id
         WHERE (%(scope)s::int[] IS NULL OR d.id = ANY(%(scope)s::int[]))
           AND (%(prefix)s::text IS NULL OR d.name COLLATE "C" LIKE %(prefix)s)
           AND (%(contains)s::text IS NULL OR d.name LIKE %(contains)s)
           AND {state}
           AND {after}
         ORDER BY {order}
         LIMIT %(limit)s
        """, {"scope": scope, "near": NEAR_LIMIT_PERCENT, **search.params()}, sort, after, limit,
        state=sql.SQL(DOMAIN_STATES[state]))


_MAILBOX_ROWS = _Rows("u.id, u.email, u.display_name, u.active, u.quota_bytes, u.created_at",
                      "virtual_users u", "u", "u.domain_id = %(domain)s::int", "u.email")
# Each state walks its own partial index in address order (migration 0021): a page
# of the few disabled or nearly full mailboxes never reads the others.
_DISABLED_ROWS = _Rows(_MAILBOX_ROWS.columns, "virtual_users u", "u", "u.domain_id = %(domain)s::int AND NOT u.active",
                       "u.email")
_USAGE_ROWS = {
    # The usage rows are the list's rows here, under the alias the sort orders name.
    level: _Rows("u.email, u.bytes, u.messages", "portal_quota_usage u", "u",
                 f"u.domain_id = %(domain)s::int AND u.level >= {level}", "u.email")
    for level in (80, 95)
}
MAILBOX_STATES = ("", "disabled", "over-80", "over-95")
# The usage states are in address order only: their index holds nothing else.
USAGE_STATE_SORTS = {name: MAILBOX_SORTS[name] for name in ("address", "address-desc")}


def mailboxes(conn, domain_id: int, search: Search, after: str | None = None,
              sort: Sort = MAILBOX_SORTS["address"], limit: int = PAGE_SIZE, state: str = "") -> Page:
    """Mailboxes of a domain in ``state`` (one of MAILBOX_STATES; "": all), with their limit and usage."""
    if state in ("over-80", "over-95"):
        if sort.name not in USAGE_STATE_SORTS:
            raise ValueError(sort.name)
        return _search_page(conn, """
            SELECT v.id, v.email, v.display_name, v.active, v.quota_bytes, v.created_at, m.limit_bytes,
                   u.bytes AS used_bytes, u.messages
              FROM ({rows}) u
             CROSS JOIN LATERAL (SELECT v.id, v.email, v.display_name, v.active, v.quota_bytes, v.created_at
                                   FROM virtual_users v WHERE v.email = u.email LIMIT 1) v
             CROSS JOIN LATERAL (SELECT m.limit_bytes FROM portal_mailbox_quota m WHERE m.mailbox_id = v.id
                                  LIMIT 1) m
             ORDER BY {order}
            """, _USAGE_ROWS[int(state[-2:])], {"domain": domain_id}, search, sort, after, limit)
    return _search_page(conn, """
        SELECT u.id, u.email, u.display_name, u.active, u.quota_bytes, u.created_at, m.limit_bytes,
               coalesce(q.bytes, 0) AS used_bytes, coalesce(q.messages, 0) AS messages
          FROM ({rows}) u
         CROSS JOIN LATERAL (SELECT m.limit_bytes FROM portal_mailbox_quota m WHERE m.mailbox_id = u.id LIMIT 1) m
          LEFT JOIN LATERAL (SELECT q.bytes, q.messages FROM portal_quota_usage q WHERE q.email = u.email LIMIT 1) q
                 ON true
         ORDER BY {order}
        """, _DISABLED_ROWS if state == "disabled" else _MAILBOX_ROWS, {"domain": domain_id}, search, sort, after,
        limit)


# One list row per alias address: its destinations are gathered for the page's addresses only.
_ALIAS_ROWS = _Rows("a.source", "virtual_aliases a", "a", "a.domain_id = %(domain)s::int", "a.source",
                    'GROUP BY a.source COLLATE "C", a.source')


def aliases(conn, domain_id: int, search: Search, after: str | None = None,
            sort: Sort = ALIAS_SORTS["address"], limit: int = PAGE_SIZE) -> Page:
    """Alias addresses of a domain, each with its destinations."""
    return _search_page(conn, """
        SELECT a.source, d.destinations, d.personal, m.mailbox IS NOT NULL AS mailbox
          FROM ({rows}) a
         CROSS JOIN LATERAL (SELECT array_agg(x.destination ORDER BY x.destination) AS destinations,
                                    bool_or(x.owner_id IS NOT NULL) AS personal
                               FROM virtual_aliases x WHERE x.source = a.source) d
          LEFT JOIN LATERAL (SELECT true AS mailbox FROM virtual_users u WHERE u.email = a.source LIMIT 1) m ON true
         ORDER BY {order}
        """, _ALIAS_ROWS, {"domain": domain_id}, search, sort, after, limit)


def roles(conn, search: Search, after: str | None = None,
          sort: Sort = ROLE_SORTS["address"], limit: int = PAGE_SIZE) -> Page:
    """Every role held, one row per role and domain, with the holder's address.

    Like every list here: ``after`` is a cursor from an earlier page (InvalidCursor if it is not one)."""
    return _page(conn, """
        SELECT r.id, r.role, r.created_at, u.email, d.name AS domain
          FROM portal_roles r
          JOIN virtual_users u ON u.id = r.user_id
          LEFT JOIN virtual_domains d ON d.id = r.domain_id
         WHERE (%(prefix)s::text IS NULL OR u.email COLLATE "C" LIKE %(prefix)s)
           AND (%(contains)s::text IS NULL OR u.email LIKE %(contains)s)
           AND {after}
         ORDER BY {order}
         LIMIT %(limit)s
        """, {**search.params()}, sort, after, limit)


REMOVAL_SORTS = _sorts(
    Sort("purge", "soonest purge first", ("r.purge_after", "r.id"), ("purge_after", "id"), ("time", "int")),
)


def removals(conn, domains: list[str] | None, after: str | None = None, sort: Sort = REMOVAL_SORTS["purge"],
             limit: int = PAGE_SIZE) -> Page:
    """Deleted mailboxes of ``domains`` (None: all) whose mail waits for its purge, soonest first.

    No search: the queue is walked in its own index's order (an address is found by creating it again,
    which names its purge date)."""
    return _page(conn, """
        SELECT r.id, r.email, r.deleted_at, r.purge_after
          FROM portal_mailbox_removals r
         WHERE r.purged_at IS NULL
           AND (%(domains)s::text[] IS NULL OR split_part(r.email, '@', 2) = ANY(%(domains)s::text[]))
           AND {after}
         ORDER BY {order}
         LIMIT %(limit)s
        """, {"domains": domains}, sort, after, limit)


SUPPORT_SORTS = _sorts(
    Sort("address", "address, A to Z", ('u.email COLLATE "C"',), ("email",), ("text",)),
    Sort("address-desc", "address, Z to A", ('u.email COLLATE "C"',), ("email",), ("text",), descending=True),
)


_SUPPORT_ROWS = _Rows("u.id, u.email, u.display_name, u.active, u.password_must_change", "virtual_users u", "u",
                      "(%(scope)s::int[] IS NULL OR u.domain_id = ANY(%(scope)s::int[]))", "u.email")


def support_mailboxes(conn, scope: list[int] | None, search: Search, after: str | None = None,
                      sort: Sort = SUPPORT_SORTS["address"], limit: int = PAGE_SIZE) -> Page:
    """Mailboxes of every domain in ``scope`` (None: all) for the helpdesk, marking those that hold a role."""
    return _search_page(conn, """
        SELECT u.*, r.holds_role IS NOT NULL AS holds_role
          FROM ({rows}) u
          LEFT JOIN LATERAL (SELECT true AS holds_role FROM portal_roles r WHERE r.user_id = u.id LIMIT 1) r ON true
         ORDER BY {order}
        """, _SUPPORT_ROWS, {"scope": scope}, search, sort, after, limit)


AUDIT_SORTS = _sorts(
    Sort("newest", "newest first", ("l.at", "l.id"), ("at", "id"), ("time", "int"), descending=True),
    Sort("oldest", "oldest first", ("l.at", "l.id"), ("at", "id"), ("time", "int")),
)


@dataclass(frozen=True)
class AuditFilter:
    """Which audit rows to show: exact actor, target and action, and a time range [since, until)."""

    actor: str | None = None
    target: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class AuditDomain:
    """A domain whose audit rows one may read, from the moment this domain was created."""

    name: str
    since: datetime


def audit_entries(conn, domains: list[AuditDomain] | None, filters: AuditFilter, after: str | None = None,
                  sort: Sort = AUDIT_SORTS["newest"], limit: int = PAGE_SIZE) -> Page:
    """Audit rows about ``domains`` (None: all rows), filtered, a page at a time."""
    names = None if domains is None else [d.name for d in domains]
    since = None if domains is None else [d.since for d in domains]
    return _page(conn, """
        SELECT l.id, l.at, l.actor, l.actor_role, host(l.client_addr) AS client_addr, l.action, l.target,
               l.domain, l.summary, l.token_id
          FROM portal_audit_log l
         WHERE (%(domains)s::text[] IS NULL OR l.domain = ANY(%(domains)s::text[]))
           AND (%(domains)s::text[] IS NULL OR l.at >= (SELECT s.since FROM unnest(%(domains)s::text[],
                %(domains_since)s::timestamptz[]) AS s(name, since) WHERE s.name = l.domain))
           AND (%(actor)s::text IS NULL OR l.actor = %(actor)s)
           AND (%(target)s::text IS NULL OR l.target = %(target)s)
           AND (%(action)s::text IS NULL OR l.action = %(action)s)
           AND (%(since)s::timestamptz IS NULL OR l.at >= %(since)s)
           AND (%(until)s::timestamptz IS NULL OR l.at < %(until)s)
           AND {after}
         ORDER BY {order}
         LIMIT %(limit)s
        """, {"domains": names, "domains_since": since, "actor": filters.actor, "target": filters.target,
              "action": filters.action,
              "since": filters.since, "until": filters.until}, sort, after, limit)
