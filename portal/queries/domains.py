"""SQL for virtual_domains."""

from __future__ import annotations


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
