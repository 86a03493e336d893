"""SQL for virtual_domains."""

from __future__ import annotations

from psycopg import errors


def get_domain_by_name(conn, name: str) -> dict | None:
    """Return the domain row with this canonical name, or None."""
    return conn.execute(
        "SELECT id, name, active FROM virtual_domains WHERE name = %s",
        (name,),
    ).fetchone()


def ensure_domain(conn, name: str) -> int:
    """Return the id of the domain with this canonical name, creating it if missing."""
    row = conn.execute(
        """
        INSERT INTO virtual_domains (name) VALUES (%s)
        ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
        RETURNING id
        """,
        (name,),
    ).fetchone()
    return row["id"]


def get_domain(conn, domain_id: int) -> dict | None:
    """Return a domain with its settings and limits, or None."""
    return conn.execute(
        """
        SELECT id, name, active, max_mailboxes, max_aliases, default_quota_bytes, max_quota_bytes,
               allow_personal_aliases, max_personal_aliases, mailbox_count, alias_count, created_at,
               allow_password_recovery, require_app_passwords
          FROM virtual_domains WHERE id = %s
        """,
        (domain_id,),
    ).fetchone()


def create_domain(conn, name: str, settings: dict) -> int | None:
    """Insert a domain with its settings; return its id, or None if the name exists (as a domain or an alias
    domain: a trigger refuses the second, migration 0017)."""
    try:
        with conn.transaction():
            row = _insert_domain(conn, name, settings)
    except errors.UniqueViolation:
        return None
    return row["id"] if row else None


def _insert_domain(conn, name: str, settings: dict) -> dict | None:
    return conn.execute(
        """
        INSERT INTO virtual_domains (name, active, max_mailboxes, max_aliases, default_quota_bytes, max_quota_bytes,
                                     allow_personal_aliases, max_personal_aliases)
        VALUES (%(name)s, %(active)s, %(max_mailboxes)s, %(max_aliases)s, %(default_quota_bytes)s,
                %(max_quota_bytes)s, %(allow_personal_aliases)s, %(max_personal_aliases)s)
        ON CONFLICT (name) DO NOTHING
        RETURNING id
        """,
        {"name": name, **settings},
    ).fetchone()


def update_domain(conn, domain_id: int, settings: dict) -> None:
    """Store a domain's settings and limits."""
    conn.execute(
        """
        UPDATE virtual_domains SET active = %(active)s, max_mailboxes = %(max_mailboxes)s,
               max_aliases = %(max_aliases)s, default_quota_bytes = %(default_quota_bytes)s,
               max_quota_bytes = %(max_quota_bytes)s, allow_personal_aliases = %(allow_personal_aliases)s,
               max_personal_aliases = %(max_personal_aliases)s
         WHERE id = %(id)s
        """,
        {"id": domain_id, **settings},
    )


def lock_domain(conn, domain_id: int) -> dict | None:
    """A domain as get_domain gives it, with its creation time, locked for update until the transaction ends."""
    return conn.execute(
        """
        SELECT id, name, active, max_mailboxes, max_aliases, default_quota_bytes, max_quota_bytes,
               allow_personal_aliases, max_personal_aliases, mailbox_count, alias_count, created_at,
               allow_password_recovery, require_app_passwords
          FROM virtual_domains WHERE id = %s FOR UPDATE
        """,
        (domain_id,),
    ).fetchone()


def set_password_recovery(conn, domain_id: int, allowed: bool) -> None:
    """Switch self-service password recovery on or off for the domain's mailboxes."""
    conn.execute("UPDATE virtual_domains SET allow_password_recovery = %s, updated_at = now() WHERE id = %s",
                 (allowed, domain_id))


def recovery_switches(conn, scope: list[int] | None, limit: int) -> list[dict]:
    """Name, id and recovery switch of the domains in ``scope`` (None: all), by name, at most ``limit``."""
    return conn.execute(
        """
        SELECT id, name, allow_password_recovery FROM virtual_domains
         WHERE %(scope)s::int[] IS NULL OR id = ANY(%(scope)s::int[])
         ORDER BY name LIMIT %(limit)s
        """,
        {"scope": scope, "limit": limit},
    ).fetchall()


def delete_domain(conn, domain_id: int) -> None:
    """Remove a domain; its mailboxes and aliases follow by foreign key."""
    conn.execute("DELETE FROM virtual_domains WHERE id = %s", (domain_id,))
