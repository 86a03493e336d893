"""SQL for virtual_aliases."""

from __future__ import annotations


def ensure_alias(conn, domain_id: int, source: str, destination: str) -> None:
    """Add the alias row unless the same source and destination exist already."""
    conn.execute(
        """
        INSERT INTO virtual_aliases (domain_id, source, destination) VALUES (%s, %s, %s)
        ON CONFLICT (source, destination) DO NOTHING
        """,
        (domain_id, source, destination),
    )


def destinations(conn, source: str) -> list[str]:
    """Return the destinations stored for a source address, sorted."""
    rows = conn.execute(
        "SELECT destination FROM virtual_aliases WHERE source = %s ORDER BY destination",
        (source,),
    ).fetchall()
    return [row["destination"] for row in rows]
