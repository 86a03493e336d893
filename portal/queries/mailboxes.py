"""SQL for virtual_users (mailboxes)."""

from __future__ import annotations

from psycopg import sql


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


_LOCKED_COLUMNS = sql.SQL("""
        SELECT u.id, u.email, u.display_name, u.active, u.quota_bytes, u.domain_id, u.password_must_change,
               u.password_changed_at, u.disabled_reason, u.created_at, u.updated_at,
               d.name AS domain, d.active AS domain_active
          FROM virtual_users u JOIN virtual_domains d ON d.id = u.domain_id
""")


def lock_mailbox(conn, mailbox_id: int) -> dict | None:
    """The mailbox row as get_mailbox gives it, locked for update until the transaction ends (None: gone)."""
    statement = sql.SQL("{} WHERE u.id = %s FOR UPDATE OF u").format(_LOCKED_COLUMNS)
    return conn.execute(statement, (mailbox_id,)).fetchone()


def lock_in_domain(conn, domain_id: int, emails: list[str]) -> list[dict]:
    """The mailboxes of a domain at ``emails``, as lock_mailbox gives them, locked in id order (the order every
    transaction locking several takes, so two never wait for each other)."""
    statement = sql.SQL("{} WHERE u.domain_id = %s AND u.email = ANY(%s) ORDER BY u.id FOR UPDATE OF u").format(
        _LOCKED_COLUMNS)
    return conn.execute(statement, (domain_id, emails)).fetchall()


def create(conn, domain_id: int, email: str, password_hash: str, quota_bytes: int, display_name: str,
           must_change: bool) -> int:
    """Insert a mailbox; return its id."""
    return conn.execute(
        "INSERT INTO virtual_users (domain_id, email, password, quota_bytes, display_name, password_must_change)"
        " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (domain_id, email, password_hash, quota_bytes, display_name, must_change),
    ).fetchone()["id"]


def update_settings(conn, mailbox_id: int, quota_bytes: int, active: bool, display_name: str) -> None:
    """Set a mailbox's limit, active flag and name; enabling it clears the reason it was disabled."""
    conn.execute(
        "UPDATE virtual_users SET quota_bytes = %s, active = %s, display_name = %s,"
        " disabled_reason = CASE WHEN %s THEN '' ELSE disabled_reason END WHERE id = %s",
        (quota_bytes, active, display_name, active, mailbox_id),
    )


def delete(conn, mailbox_id: int) -> None:
    """Remove the mailbox row (its roles, sessions and personal aliases follow by foreign key)."""
    conn.execute("DELETE FROM virtual_users WHERE id = %s", (mailbox_id,))


def of_domain(conn, domain_id: int) -> list[dict]:
    """Every mailbox of a domain: id and address."""
    return conn.execute("SELECT id, email FROM virtual_users WHERE domain_id = %s ORDER BY id", (domain_id,)).fetchall()


def queue_removals(conn, emails: list[str], maildirs: list[str], grace_days: int) -> dict:
    """Record deleted mailboxes whose maildirs are kept until the grace period ends; return the purge date."""
    rows = conn.execute(
        """
        INSERT INTO portal_mailbox_removals (email, maildir, purge_after)
        SELECT e, m, now() + make_interval(days => %s) FROM unnest(%s::text[], %s::text[]) AS t(e, m)
        RETURNING purge_after
        """,
        (grace_days, emails, maildirs),
    ).fetchall()
    return {"count": len(rows), "purge_after": rows[0]["purge_after"] if rows else None}


def pending_removal(conn, address: str) -> dict | None:
    """The removal of a deleted mailbox at this address whose mail is still kept (None: none)."""
    return conn.execute(
        "SELECT deleted_at, purge_after, maildir FROM portal_mailbox_removals WHERE email = %s AND purged_at IS NULL",
        (address,),
    ).fetchone()


def pending_removals_in_domain(conn, domain: str) -> bool:
    """Whether deleted mailboxes of this domain still have mail waiting for its purge."""
    return conn.execute(
        "SELECT EXISTS (SELECT 1 FROM portal_mailbox_removals WHERE split_part(email, '@', 2) = %s"
        " AND purged_at IS NULL) AS e", (domain,)).fetchone()["e"]


def due_removals(conn, address: str | None = None) -> list[dict]:
    """Removals whose grace period is over (or the named one, due or not), locked against a second purge."""
    if address:
        return conn.execute(
            "SELECT id, email, maildir FROM portal_mailbox_removals WHERE email = %s AND purged_at IS NULL",
            (address,),
        ).fetchall()
    return conn.execute(
        "SELECT id, email, maildir FROM portal_mailbox_removals WHERE purged_at IS NULL AND purge_after <= now()"
        " ORDER BY purge_after"
    ).fetchall()


def mark_purged(conn, removal_id: int) -> None:
    """Record that a removal's maildir is gone."""
    conn.execute("UPDATE portal_mailbox_removals SET purged_at = now() WHERE id = %s", (removal_id,))


def forget_usage(conn, email: str) -> None:
    """Drop the usage Dovecot last reported for an address whose mailbox is gone."""
    conn.execute("DELETE FROM portal_quota_usage WHERE email = %s", (email,))


def set_active(conn, mailbox_id: int, active: bool, reason: str) -> None:
    """Enable a mailbox, or disable it with the reason shown to the helpdesk."""
    conn.execute("UPDATE virtual_users SET active = %s, disabled_reason = %s WHERE id = %s",
                 (active, reason, mailbox_id))


def unsafe_names(conn, pattern: str, limit: int = 50) -> list[str]:
    """Mailboxes whose part before the @ does not match ``pattern`` (addresses.MAILBOX_LOCAL_PART_PATTERN)."""
    return [r["email"] for r in conn.execute(
        "SELECT email FROM virtual_users WHERE split_part(email, '@', 1) !~ %s ORDER BY email LIMIT %s",
        (pattern, limit),
    ).fetchall()]


def main_password_hash_beside_app_passwords(conn, email: str) -> str | None:
    """The stored main password hash of a mailbox that has app passwords (None: it has none)."""
    row = conn.execute(
        "SELECT u.password FROM virtual_users u WHERE u.email = %s"
        " AND EXISTS (SELECT 1 FROM portal_app_passwords a WHERE a.mailbox_id = u.id)",
        (email,),
    ).fetchone()
    return row["password"] if row else None


def portal_checked_password_hash(conn, email: str) -> str | None:
    """The stored hash of an active mailbox whose password Dovecot refuses to mail clients: one someone else has
    seen, or one its mail clients may not use (app passwords only). None: no such mailbox."""
    row = conn.execute(
        """
        SELECT u.password FROM virtual_users u JOIN virtual_domains d ON d.id = u.domain_id
          LEFT JOIN portal_mailbox_settings s ON s.mailbox_id = u.id
         WHERE u.email = %s AND u.active AND d.active
           AND (u.password_must_change OR d.require_app_passwords OR coalesce(s.mail_clients_use_app_passwords, false))
        """,
        (email,),
    ).fetchone()
    return row["password"] if row else None


def taken(conn, addresses: list[str]) -> dict[str, str]:
    """Which of ``addresses`` are in use: "mailbox", "alias", or "deleted" (a deleted mailbox's, mail still kept)."""
    rows = conn.execute(
        """
        SELECT email AS address, 'mailbox' AS what FROM virtual_users WHERE email = ANY(%(a)s)
        UNION ALL SELECT DISTINCT source, 'alias' FROM virtual_aliases WHERE source = ANY(%(a)s)
        UNION ALL SELECT email, 'deleted' FROM portal_mailbox_removals WHERE email = ANY(%(a)s) AND purged_at IS NULL
        """,
        {"a": addresses},
    ).fetchall()
    found: dict[str, str] = {}
    for row in rows:
        found.setdefault(row["address"], row["what"])
    return found
