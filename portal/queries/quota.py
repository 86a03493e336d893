"""SQL for quota limits (portal_mailbox_quota) and usage (portal_quota_usage, written by Dovecot)."""

from __future__ import annotations

from psycopg import sql

_SORTS = {
    # Allow-listed orderings; id breaks ties so pages never overlap.
    "usage": sql.SQL("coalesce(q.bytes, 0) DESC, u.id"),
    "address": sql.SQL("u.email, u.id"),
}


def mailbox_usage(conn, email: str) -> dict | None:
    """Return the limit Dovecot enforces and the usage it reported (zeros before its first report)."""
    return conn.execute(
        """
        SELECT m.email, m.limit_bytes,
               coalesce(q.bytes, 0) AS used_bytes, coalesce(q.messages, 0) AS messages,
               q.email IS NOT NULL AS reported
          FROM portal_mailbox_quota m
          LEFT JOIN portal_quota_usage q ON q.email = m.email
         WHERE m.email = %s
        """,
        (email,),
    ).fetchone()


def domain_usage(conn, domain_id: int, sort: str = "usage", limit: int = 50) -> list[dict]:
    """Return every mailbox of a domain with its limit and usage, in one query."""
    query = sql.SQL(
        """
        SELECT u.id, u.email, u.active, u.quota_bytes, m.limit_bytes,
               coalesce(q.bytes, 0) AS used_bytes, coalesce(q.messages, 0) AS messages
          FROM virtual_users u
          JOIN portal_mailbox_quota m ON m.mailbox_id = u.id
          LEFT JOIN portal_quota_usage q ON q.email = u.email
         WHERE u.domain_id = %s
         ORDER BY {order}
         LIMIT %s
        """
    ).format(order=_SORTS[sort])  # KeyError for anything not allow-listed
    return conn.execute(query, (domain_id, limit)).fetchall()


def set_mailbox_limit(conn, mailbox_id: int, limit_bytes: int) -> None:
    """Store a mailbox's own limit in bytes (0: the domain default)."""
    conn.execute("UPDATE virtual_users SET quota_bytes = %s WHERE id = %s", (limit_bytes, mailbox_id))


def store_usage(conn, email: str, used_bytes: int, messages: int) -> None:
    """Record usage for a mailbox (as quota_clone would)."""
    conn.execute(
        """
        INSERT INTO portal_quota_usage (email, bytes, messages) VALUES (%s, %s, %s)
        ON CONFLICT (email) DO UPDATE SET bytes = EXCLUDED.bytes, messages = EXCLUDED.messages
        """,
        (email, used_bytes, messages),
    )
