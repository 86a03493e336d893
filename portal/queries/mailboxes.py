"""SQL for virtual_users (mailboxes)."""

from __future__ import annotations


def get_mailbox(conn, email: str) -> dict | None:
    """Return the mailbox with this canonical address and its domain's state, or None."""
    return conn.execute(
        """
        SELECT u.id, u.email, u.display_name, u.active, u.quota_bytes, u.domain_id, u.password_must_change,
               u.password_changed_at, u.disabled_reason, u.created_at, u.updated_at,
               d.name AS domain, d.active AS domain_active
          FROM virtual_users u JOIN virtual_domains d ON d.id = u.domain_id
         WHERE u.email = %s
        """,
        (email,),
    ).fetchone()


def upsert_mailbox(conn, domain_id: int, email: str, password_hash: str) -> int:
    """Create the mailbox, or set its password if it exists; return its id."""
    row = conn.execute(
        """
        INSERT INTO virtual_users (domain_id, email, password) VALUES (%s, %s, %s)
        ON CONFLICT (email) DO UPDATE SET password = EXCLUDED.password
        RETURNING id
        """,
        (domain_id, email, password_hash),
    ).fetchone()
    return row["id"]


def set_password(conn, user_id: int, password_hash: str, must_change: bool = False) -> None:
    """Store a new password hash and when it changed."""
    conn.execute(
        """
        UPDATE virtual_users
           SET password = %s, password_changed_at = now(), password_must_change = %s
         WHERE id = %s
        """,
        (password_hash, must_change, user_id),
    )
