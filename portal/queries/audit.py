"""SQL for the audit log. Never pass a password, a hash or a session token."""

from __future__ import annotations

from psycopg.types.json import Jsonb


def record(
    conn,
    *,
    actor: str,
    actor_role: str,
    client_addr: str | None,
    action: str,
    target: str = "",
    domain: str = "",
    summary: dict | None = None,
    token_id: int | None = None,
) -> None:
    """Write one audit row (call inside the transaction of the change it records); ``token_id``: the API
    token the actor used."""
    conn.execute(
        """
        INSERT INTO portal_audit_log (actor, actor_role, client_addr, action, target, domain, summary, token_id)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
        """,
        (actor, actor_role, client_addr, action, target, domain, Jsonb(summary or {}), token_id),
    )


def entries_for_target(conn, target: str, since, domain: str | None = None, limit: int = 20) -> list[dict]:
    """Return the newest audit rows about one address since ``since`` (its mailbox's creation; an earlier
    owner's history is not the new owner's), only those of ``domain`` when given."""
    return conn.execute(
        """
        SELECT at, actor, actor_role, client_addr, action, target, domain, summary, token_id
          FROM portal_audit_log
         WHERE target = %(target)s AND at >= %(since)s AND (%(domain)s::text IS NULL OR domain = %(domain)s)
         ORDER BY at DESC, id DESC LIMIT %(limit)s
        """,
        {"target": target, "since": since, "domain": domain, "limit": limit},
        prepare=False,
    ).fetchall()


def account_history(conn, email: str, since, limit: int = 10) -> list[dict]:
    """Return the newest changes to one account since ``since`` (its creation): made to it by anyone, or by
    its owner through self-service."""
    return conn.execute(
        """
        SELECT at, actor, actor_role, client_addr, action, target, domain, summary
          FROM portal_audit_log
         WHERE (target = %(email)s OR (actor = %(email)s AND actor_role = 'user')) AND at >= %(since)s
         ORDER BY at DESC, id DESC LIMIT %(limit)s
        """,
        {"email": email, "since": since, "limit": limit},
    ).fetchall()
