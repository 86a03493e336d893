"""SQL for the portal's roles (portal_roles)."""

from __future__ import annotations


def roles_of(conn, user_id: int) -> list[dict]:
    """Return a mailbox's roles with the names of their domains (None: every domain)."""
    return conn.execute(
        """
        SELECT r.role, r.domain_id, d.name AS domain
          FROM portal_roles r LEFT JOIN virtual_domains d ON d.id = r.domain_id
         WHERE r.user_id = %s
         ORDER BY r.role, d.name NULLS FIRST
        """,
        (user_id,),
    ).fetchall()


def grant(conn, user_id: int, role: str, domain_id: int | None) -> bool:
    """Give a role (in one domain, or everywhere); return False if it was held already."""
    return (
        conn.execute(
            """
            INSERT INTO portal_roles (user_id, role, domain_id) VALUES (%s, %s, %s)
            ON CONFLICT (user_id, role, coalesce(domain_id, 0)) DO NOTHING
            """,
            (user_id, role, domain_id),
        ).rowcount
        == 1
    )


def revoke(conn, user_id: int, role: str, domain_id: int | None) -> bool:
    """Take a role back; return False if it was not held."""
    return (
        conn.execute(
            "DELETE FROM portal_roles WHERE user_id = %s AND role = %s AND domain_id IS NOT DISTINCT FROM %s",
            (user_id, role, domain_id),
        ).rowcount
        == 1
    )


def other_usable_superadmins(conn, user_id: int) -> int:
    """Return how many superadmins besides ``user_id`` could sign in (their mailbox and domain active)."""
    return conn.execute(
        """
        SELECT count(*) AS n FROM portal_roles r
          JOIN virtual_users u ON u.id = r.user_id JOIN virtual_domains d ON d.id = u.domain_id
         WHERE r.role = 'superadmin' AND r.user_id <> %s AND u.active AND d.active
        """,
        (user_id,),
    ).fetchone()["n"]


def is_superadmin(conn, user_id: int) -> bool:
    """Whether the mailbox holds the superadmin role."""
    return conn.execute(
        "SELECT EXISTS (SELECT 1 FROM portal_roles WHERE user_id = %s AND role = 'superadmin') AS x", (user_id,)
    ).fetchone()["x"]


def all_roles(conn) -> list[dict]:
    """Return every role holder, by address."""
    return conn.execute(
        """
        SELECT u.email, r.role, d.name AS domain
          FROM portal_roles r
          JOIN virtual_users u ON u.id = r.user_id
          LEFT JOIN virtual_domains d ON d.id = r.domain_id
         ORDER BY u.email, r.role, d.name NULLS FIRST
        """
    ).fetchall()


def get_role(conn, role_id: int) -> dict | None:
    """Return one held role with its holder's address and its domain's name."""
    return conn.execute(
        """
        SELECT r.id, r.role, u.email, d.name AS domain
          FROM portal_roles r
          JOIN virtual_users u ON u.id = r.user_id
          LEFT JOIN virtual_domains d ON d.id = r.domain_id
         WHERE r.id = %s
        """,
        (role_id,),
    ).fetchone()


def roles_of_locked(conn, user_id: int) -> list[dict]:
    """A mailbox's roles, share-locked until the transaction ends: a revoke waits for the action they allow."""
    return conn.execute(
        "SELECT r.role, r.domain_id FROM portal_roles r WHERE r.user_id = %s ORDER BY r.id FOR SHARE",
        (user_id,),
    ).fetchall()


def held_role_id(conn, user_id: int, role: str, domain_id: int | None) -> int | None:
    """The id of a role a mailbox holds (None: not held)."""
    row = conn.execute(
        "SELECT id FROM portal_roles WHERE user_id = %s AND role = %s AND domain_id IS NOT DISTINCT FROM %s",
        (user_id, role, domain_id),
    ).fetchone()
    return row["id"] if row else None
