"""Generate a large mail database with COPY, for the benchmarks."""

from __future__ import annotations

import time
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import psycopg.sql

# A valid SHA512-CRYPT hash; generated mailboxes are never logged in to.
HASH = "$6$benchbenchbench$" + "A" * 86


EPOCH = datetime(2023, 1, 1, tzinfo=UTC)


def created_at(n: int) -> datetime:
    """When row ``n`` was made: two minutes apart, in id order, so newest-first lists have real times to page on."""
    return EPOCH + timedelta(minutes=2 * n)


def generate(conn, domains: int, mailboxes: int, aliases: int, big_share: float = 0.0) -> float:
    """Fill the three tables with COPY; return the seconds it took.

    ``big_share`` of the mailboxes and aliases go to domain 1 (``d1.example``),
    the rest spread over all domains, as on a server with one large tenant.
    """
    started = time.perf_counter()
    big_boxes = int(mailboxes * big_share)
    big_aliases = int(aliases * big_share)

    def box_domain(u: int) -> int:
        return 1 if u <= big_boxes else u % domains + 1

    with conn.transaction():
        with conn.cursor().copy("COPY virtual_domains (id, name, created_at) FROM STDIN") as copy:
            for d in range(1, domains + 1):
                copy.write_row((d, f"d{d}.example", created_at(d)))
        with conn.cursor().copy("COPY virtual_users (id, domain_id, password, email, created_at) FROM STDIN") as copy:
            for u in range(1, mailboxes + 1):
                d = box_domain(u)
                copy.write_row((u, d, HASH, f"u{u}@d{d}.example", created_at(u)))
        with conn.cursor().copy("COPY virtual_aliases (id, domain_id, source, destination) FROM STDIN") as copy:
            for a in range(1, aliases + 1):
                d = 1 if a <= big_aliases else a % domains + 1
                u = a % mailboxes + 1
                copy.write_row((a, d, f"a{a}@d{d}.example", f"u{u}@d{box_domain(u)}.example"))
        for table in ("virtual_domains", "virtual_users", "virtual_aliases"):
            conn.execute(
                psycopg.sql.SQL("SELECT setval(pg_get_serial_sequence({}, 'id'), (SELECT max(id) FROM {}))").format(
                    psycopg.sql.Literal(table), psycopg.sql.Identifier(table)
                )
            )
    conn.execute("ANALYZE")
    return time.perf_counter() - started


def generate_audit(conn, rows: int, domains: int, mailboxes: int) -> float:
    """Fill the audit log with ``rows`` rows spread over the domains, newest last; return the seconds it took.

    Actors, targets and actions repeat as on a real server: a few staff accounts
    and many targets, a handful of actions.
    """
    started = time.perf_counter()
    actions = ("mailbox.create", "mailbox.update", "alias.create", "alias.delete", "password.change", "forward.set")
    with conn.transaction():
        with conn.cursor().copy(
            "COPY portal_audit_log (at, actor, actor_role, action, target, domain) FROM STDIN"
        ) as copy:
            for n in range(1, rows + 1):
                d = n % domains + 1
                copy.write_row((created_at(n), f"admin{n % 50}@d{d}.example", "domain-admin", actions[n % len(actions)],
                                f"u{n % mailboxes + 1}@d{d}.example", f"d{d}.example"))
    conn.execute("ANALYZE portal_audit_log")
    return time.perf_counter() - started


def generate_usage(conn, removals: int = 20_000) -> float:
    """Give every mailbox a size limit and the usage Dovecot would report, disable one in 97, and queue
    ``removals`` deleted mailboxes for purging; return the seconds it took.

    One mailbox in 20 is over 80 % of its limit and one in 50 over 95 %: the
    states the administration overview counts and its filtered lists show.
    """
    started = time.perf_counter()
    conn.execute("UPDATE virtual_users SET quota_bytes = id * 1000 * (CASE WHEN id % 50 = 1 THEN 1.02"
                 " WHEN id % 20 = 0 THEN 1.1 ELSE 4 END)::numeric, active = (id % 97 <> 0)")
    conn.execute("INSERT INTO portal_quota_usage (email, bytes, messages) SELECT email, id * 1000, id % 100"
                 " FROM virtual_users ON CONFLICT (email) DO NOTHING")
    conn.execute("INSERT INTO portal_mailbox_removals (email, maildir, deleted_at, purge_after)"
                 " SELECT 'gone' || n || '@d' || (n %% 100 + 1) || '.example', '', now(),"
                 " now() + n * interval '1 minute' FROM generate_series(1, %s) n", (removals,))
    return time.perf_counter() - started
