"""Every admin list and search query keeps an index-driven plan at scale.

Two data sets, each built once in a database of its own: the list benchmark's
(10k domains, 500k mailboxes, 1M aliases) and one large tenant (10 domains,
110k mailboxes and 200k aliases, 90 % of them in one domain: the shape in which
the old alias list hashed every mailbox in a SubPlan), each with an audit log of
300k rows. Each query
of ``portal/queries/listing.py`` is run under EXPLAIN with every sort order,
filter and search the pages offer, on a large domain and a small one, first
pages and deep ones. A plan fails when it reads a big table with a sequential
scan, or hashes one in a SubPlan: both cost what the whole server holds, not
what the page shows.

``virtual_domains`` (one row per tenant) and ``portal_roles`` (one per staff
role) are not big tables: the domain list sorted by mailbox count, and the role
list sorted by holder, read all of them on purpose (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
import stack
from psycopg import sql
from psycopg.rows import dict_row

from portal import migrate
from portal.queries import listing
from portal.queries import overview as overview_queries

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from dataset import EPOCH  # noqa: E402
from dataset import created_at  # noqa: E402
from dataset import generate  # noqa: E402
from dataset import generate_audit  # noqa: E402
from dataset import generate_usage  # noqa: E402

SHAPES = {
    "spread": {"domains": 10_000, "mailboxes": 500_000, "aliases": 1_000_000, "big_share": 0.4},
    "one-tenant": {"domains": 10, "mailboxes": 110_000, "aliases": 200_000, "big_share": 0.9},
}
AUDIT_ROWS = 300_000
BIG_TABLES = {"virtual_users", "virtual_aliases", "portal_audit_log", "portal_quota_usage", "portal_mailbox_removals"}
BIG_DOMAIN, SMALL_DOMAIN = 1, 2  # d1.example holds 40 % of everything, as in bench/admin_lists.py


@pytest.fixture(scope="module", params=sorted(SHAPES))
def large(mail_stack, request):
    """A connection to a large data set; built on first use and kept between runs (about a minute for both)."""
    shape = SHAPES[request.param]
    db_name = f"mailportal_plans_{request.param.replace('-', '_')}"
    stack.ensure_database(db_name)
    with psycopg.connect(stack.database_url(db_name), autocommit=True, row_factory=dict_row) as conn:
        migrate.upgrade(conn, report=lambda _: None)
        if conn.execute("SELECT to_regclass('plans_dataset_complete') AS ready").fetchone()["ready"] is None:
            conn.close()
            stack.ensure_database(db_name, fresh=True)
            with psycopg.connect(stack.database_url(db_name), autocommit=True) as fresh:
                migrate.upgrade(fresh, report=lambda _: None)
                generate(fresh, shape["domains"], shape["mailboxes"], shape["aliases"], big_share=shape["big_share"])
                generate_audit(fresh, AUDIT_ROWS, shape["domains"], shape["mailboxes"])
                _add_roles_and_usage(fresh)
                fresh.execute("ANALYZE")
                fresh.execute("CREATE TABLE plans_dataset_complete ()")  # only a whole data set is kept for reuse
            conn = psycopg.connect(stack.database_url(db_name), autocommit=True, row_factory=dict_row)
        try:
            yield conn
        finally:
            conn.close()


def _add_roles_and_usage(conn) -> None:
    """A domain admin for every 10th domain; limits, usage (as Dovecot reports it) and states for the overview."""
    conn.execute("""
        INSERT INTO portal_roles (user_id, role, domain_id)
        SELECT min(u.id), 'domain_admin', u.domain_id FROM virtual_users u WHERE u.domain_id % 10 = 0 GROUP BY 3
    """)
    generate_usage(conn)


class Explaining:
    """Stands in for the connection: each query is explained instead of run, and its plan kept."""

    def __init__(self, conn):
        self.conn = conn
        self.info = conn.info
        self.plans: list[dict] = []

    def transaction(self):
        return self.conn.transaction()

    def execute(self, statement, params=None, prepare=None):
        if isinstance(statement, str) and statement.startswith("SELECT set_config("):
            return self.conn.execute(statement)  # planner settings for what follows: they shape the plan
        explain = sql.SQL("EXPLAIN (FORMAT JSON, VERBOSE) ") + statement
        plan = self.conn.execute(explain, params, prepare=prepare).fetchone()["QUERY PLAN"][0]["Plan"]
        self.plans.append(plan)
        return self

    def fetchall(self) -> list:
        return []

    def fetchone(self) -> dict:
        return {"n": 0}


def nodes(plan: dict, hashed_names: set[str], inside_hashed_subplan: bool = False):
    """Every node of a plan, with whether it sits under a hashed SubPlan."""
    name = plan.get("Subplan Name", "")
    hashed = inside_hashed_subplan or name.startswith("hashed") or name in hashed_names
    yield plan, hashed
    for child in plan.get("Plans", []):
        yield from nodes(child, hashed_names, hashed)


def hashed_subplans(plan: dict) -> set[str]:
    """The SubPlans that a plan's expressions use hashed: PostgreSQL names them so only there ("hashed SubPlan 1")."""
    return {f"SubPlan {n}" for n in re.findall(r"hashed SubPlan (\d+)", json.dumps(plan))}


def problems(plan: dict) -> list[str]:
    """What in a plan reads a big table whole."""
    found = []
    for node, hashed in nodes(plan, hashed_subplans(plan)):
        relation = node.get("Relation Name")
        if relation not in BIG_TABLES:
            continue
        if node["Node Type"] == "Seq Scan":
            found.append(f"sequential scan of {relation}")
        if hashed:
            found.append(f"hashed SubPlan over {relation}")
    return found


SEARCHES = [
    listing.Search(),
    listing.Search("u1234", "prefix"),
    listing.Search("a9876", "prefix"),
    listing.Search("d123", "prefix"),
    listing.Search("u29", "contains"),  # matches cluster together in the sort order
    listing.Search("23456", "contains"),
    listing.Search("98765", "contains"),
    listing.Search("example", "contains"),  # matches every row
    listing.Search("zzzz", "contains"),  # matches none
    listing.Search("@d1.", "contains"),
]


def deep_cursor(sort: listing.Sort) -> str:
    """A cursor deep into the big domain's lists, for every kind of sort key."""
    values = {"text": {"email": "u150000@d1.example", "source": "a300000@d1.example", "name": "d5000.example",
                       "role": "domain-admin"},
              "int": 100_000, "time": created_at(100_000).isoformat()}
    cursor = []
    for field, kind in zip(sort.fields, sort.types, strict=True):
        cursor.append(values["text"][field] if kind == "text" else values[kind])
    return json.dumps(cursor)


def every_list_query():
    """(name, call) for each list query in each shape the pages can ask for."""
    for search in SEARCHES:
        for sort in listing.DOMAIN_SORTS.values():
            for after in (None, deep_cursor(sort)):
                for scope in (None, [BIG_DOMAIN, SMALL_DOMAIN, 3]):
                    yield (f"domains {sort.name} {search} {after} {scope}",
                           lambda c, s=search, o=sort, a=after, sc=scope: listing.domains(c, sc, s, a, o))
                for state in listing.DOMAIN_STATES:
                    yield (f"domains {state} {sort.name} {search} {after}",
                           lambda c, s=search, o=sort, a=after, st=state: listing.domains(c, None, s, a, o, state=st))
        for domain in (BIG_DOMAIN, SMALL_DOMAIN):
            for state in listing.MAILBOX_STATES:
                sorts = listing.USAGE_STATE_SORTS if state.startswith("over") else listing.MAILBOX_SORTS
                for sort in sorts.values():
                    for after in (None, deep_cursor(sort)):
                        yield (f"mailboxes d{domain} {state} {sort.name} {search} {after}",
                               lambda c, d=domain, s=search, o=sort, a=after, st=state:
                               listing.mailboxes(c, d, s, a, o, state=st))
            for sort in listing.ALIAS_SORTS.values():
                for after in (None, deep_cursor(sort)):
                    yield (f"aliases d{domain} {sort.name} {search} {after}",
                           lambda c, d=domain, s=search, o=sort, a=after: listing.aliases(c, d, s, a, o))
        for sort in listing.ROLE_SORTS.values():
            yield f"roles {sort.name} {search}", lambda c, s=search, o=sort: listing.roles(c, s, None, o)
        for sort in listing.SUPPORT_SORTS.values():
            for after in (None, deep_cursor(sort)):
                for scope in (None, [BIG_DOMAIN], [SMALL_DOMAIN, 3]):
                    yield (f"helpdesk {sort.name} {search} {after} {scope}",
                           lambda c, s=search, o=sort, a=after, sc=scope: listing.support_mailboxes(c, sc, s, a, o))
    for sort in listing.REMOVAL_SORTS.values():
        for after in (None, deep_cursor(sort)):
            for domains in (None, ["d1.example"], ["d2.example", "d3.example"]):
                yield (f"removals {sort.name} {after} {domains}",
                       lambda c, o=sort, a=after, ds=domains: listing.removals(c, ds, a, o))
    for scope, names in ((None, None), ([BIG_DOMAIN], ["d1.example"]),
                         ([SMALL_DOMAIN, 3], ["d2.example", "d3.example"])):
        yield f"overview figures {scope}", lambda c, sc=scope: overview_queries.figures(c, sc)
        yield f"overview removals {names}", lambda c, ns=names: overview_queries.pending_removals(c, ns)
    filters = [
        listing.AuditFilter(),
        listing.AuditFilter(actor="admin7@d8.example"),
        listing.AuditFilter(target="u42@d43.example"),
        listing.AuditFilter(action="alias.create"),
        listing.AuditFilter(since=datetime(2023, 3, 1, tzinfo=UTC), until=datetime(2023, 3, 2, tzinfo=UTC)),
        listing.AuditFilter(action="password.change", since=datetime(2023, 6, 1, tzinfo=UTC)),
    ]
    for audit_filter in filters:
        for sort in listing.AUDIT_SORTS.values():
            for after in (None, deep_cursor(sort)):
                for domains in (None, [listing.AuditDomain("d1.example", EPOCH)],
                                [listing.AuditDomain("d2.example", EPOCH), listing.AuditDomain("d3.example", EPOCH)]):
                    yield (f"audit {sort.name} {audit_filter} {after} {domains}",
                           lambda c, f=audit_filter, o=sort, a=after, ds=domains: listing.audit_entries(c, ds, f, a, o))


def test_no_list_reads_a_big_table_whole(large):
    failures = []
    count = 0
    for name, call in every_list_query():
        explaining = Explaining(large)
        call(explaining)
        for plan in explaining.plans:
            count += 1
            failures.extend(f"{name}: {problem}" for problem in problems(plan))
    assert count > 500  # every shape above was explained
    assert failures == []


def test_the_checker_sees_a_hashed_subplan_and_a_sequential_scan(large):
    """The checker catches what it is for, and passes an index lookup."""
    explaining = Explaining(large)
    large.execute("SET work_mem = '256MB'")  # room to hash every address: the plan a large server may get
    try:
        explaining.execute(sql.SQL("""
            SELECT a.source, a.source IN (SELECT u.email FROM virtual_users u) AS mailbox
              FROM virtual_aliases a WHERE a.domain_id = 1
        """))
    finally:
        large.execute("RESET work_mem")
    explaining.execute(sql.SQL("SELECT count(*) FROM virtual_users WHERE display_name = 'x'"))
    explaining.execute(sql.SQL("SELECT email FROM virtual_users WHERE email = 'u1@d1.example'"))
    assert "hashed SubPlan over virtual_users" in problems(explaining.plans[0])
    assert problems(explaining.plans[1]) == ["sequential scan of virtual_users"]
    assert problems(explaining.plans[2]) == []
