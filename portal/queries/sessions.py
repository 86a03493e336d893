"""SQL for server-side sessions (portal_sessions)."""

from __future__ import annotations

from datetime import timedelta


def create_session(conn, token_hash: bytes, user_id: int, client_addr: str | None) -> None:
    """Record a new session for the mailbox."""
    conn.execute(
        "INSERT INTO portal_sessions (token_hash, user_id, client_addr) VALUES (%s, %s, %s)",
        (token_hash, user_id, client_addr),
    )


SIGN_INS_KEPT = 10


def record_sign_in(conn, user_id: int, client_addr: str | None) -> None:
    """Remember a sign-in, keeping the newest SIGN_INS_KEPT of the mailbox."""
    conn.execute("INSERT INTO portal_sign_ins (mailbox_id, client_addr) VALUES (%s, %s)", (user_id, client_addr))
    conn.execute(
        """
        DELETE FROM portal_sign_ins
         WHERE mailbox_id = %(user_id)s
           AND id NOT IN (SELECT id FROM portal_sign_ins WHERE mailbox_id = %(user_id)s
                           ORDER BY at DESC, id DESC LIMIT %(kept)s)
        """,
        {"user_id": user_id, "kept": SIGN_INS_KEPT},
    )


def recent_sign_ins(conn, user_id: int, limit: int = 5) -> list[dict]:
    """The mailbox's newest portal sign-ins: when, and from which address."""
    return conn.execute(
        "SELECT at, host(client_addr) AS client_addr FROM portal_sign_ins WHERE mailbox_id = %s"
        " ORDER BY at DESC, id DESC LIMIT %s",
        (user_id, limit),
    ).fetchall()


def load_session_user(
    conn, token_hash: bytes, idle: timedelta, absolute: timedelta, touch_after: timedelta
) -> dict | None:
    """Return the session's mailbox if the session is alive and the mailbox and domain active.

    Refreshes ``last_seen_at`` when it is older than ``touch_after`` (one write a
    minute rather than one a request).
    """
    return conn.execute(
        """
        WITH live AS (
            SELECT s.token_hash, s.last_seen_at, u.id, u.email, u.password_must_change, d.name AS domain
              FROM portal_sessions s
              JOIN virtual_users u ON u.id = s.user_id
              JOIN virtual_domains d ON d.id = u.domain_id
             WHERE s.token_hash = %(token_hash)s
               AND s.last_seen_at > now() - %(idle)s
               AND s.created_at > now() - %(absolute)s
               AND u.active AND d.active
        ), touched AS (
            UPDATE portal_sessions s SET last_seen_at = now()
              FROM live
             WHERE s.token_hash = live.token_hash AND live.last_seen_at < now() - %(touch_after)s
        )
        SELECT id, email, password_must_change, domain FROM live
        """,
        {"token_hash": token_hash, "idle": idle, "absolute": absolute, "touch_after": touch_after},
    ).fetchone()


def delete_session(conn, token_hash: bytes) -> None:
    """End one session."""
    conn.execute("DELETE FROM portal_sessions WHERE token_hash = %s", (token_hash,))


def delete_user_sessions(conn, user_id: int) -> int:
    """End every session of a mailbox; return how many there were."""
    return conn.execute("DELETE FROM portal_sessions WHERE user_id = %s", (user_id,)).rowcount


def delete_other_sessions(conn, user_id: int, keep_token_hash: bytes | None) -> int:
    """End every session of a mailbox but the one whose token hash is ``keep_token_hash``; return how many."""
    return conn.execute(
        "DELETE FROM portal_sessions WHERE user_id = %s AND token_hash IS DISTINCT FROM %s", (user_id, keep_token_hash)
    ).rowcount


def delete_expired_sessions(conn, idle: timedelta, absolute: timedelta) -> int:
    """Remove sessions past their idle or absolute timeout; return how many."""
    return conn.execute(
        "DELETE FROM portal_sessions WHERE last_seen_at < now() - %s OR created_at < now() - %s",
        (idle, absolute),
    ).rowcount


def count_user_sessions(conn, user_id: int) -> int:
    """Return how many portal sessions a mailbox has open."""
    return conn.execute("SELECT count(*) AS n FROM portal_sessions WHERE user_id = %s", (user_id,)).fetchone()["n"]


def delete_domain_sessions(conn, domain_id: int) -> int:
    """End every portal session of a domain's mailboxes; return how many."""
    return conn.execute(
        "DELETE FROM portal_sessions s USING virtual_users u WHERE u.id = s.user_id AND u.domain_id = %s",
        (domain_id,),
    ).rowcount
