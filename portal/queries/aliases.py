"""SQL for virtual_aliases."""

from __future__ import annotations

# Every change to alias rows takes this lock first: the loop check reads rows of
# other addresses, and two saves checked side by side could close a loop together.
_ALIAS_GRAPH_LOCK = 0x616C69617365


def lock_alias_graph(conn) -> None:
    """Serialise alias changes until the end of the current transaction."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ALIAS_GRAPH_LOCK,))


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


def replace_destinations(conn, domain_id: int, source: str, wanted: list[str]) -> None:
    """Make the rows of ``source`` exactly ``wanted`` (call inside a transaction)."""
    conn.execute(
        "DELETE FROM virtual_aliases WHERE source = %s AND NOT destination = ANY(%s)",
        (source, wanted),
    )
    conn.execute(
        """
        INSERT INTO virtual_aliases (domain_id, source, destination)
        SELECT %s, %s, d FROM unnest(%s::text[]) AS d
        ON CONFLICT (source, destination) DO NOTHING
        """,
        (domain_id, source, wanted),
    )


def source_exists(conn, source: str) -> bool:
    """Whether any alias row has this source address."""
    return conn.execute("SELECT EXISTS (SELECT 1 FROM virtual_aliases WHERE source = %s) AS e", (source,)).fetchone()[
        "e"
    ]


def personal_aliases(conn, owner_id: int) -> list[dict]:
    """Return the personal aliases of a mailbox, by address."""
    return conn.execute(
        "SELECT id, source, created_at FROM virtual_aliases WHERE owner_id = %s ORDER BY source",
        (owner_id,),
    ).fetchall()


def count_personal_aliases(conn, owner_id: int) -> int:
    """Return how many personal aliases a mailbox has."""
    return conn.execute("SELECT count(*) AS n FROM virtual_aliases WHERE owner_id = %s", (owner_id,)).fetchone()["n"]


def add_personal_alias(conn, domain_id: int, source: str, destination: str, owner_id: int) -> int:
    """Insert a personal alias row and return its id."""
    return conn.execute(
        """
        INSERT INTO virtual_aliases (domain_id, source, destination, owner_id) VALUES (%s, %s, %s, %s)
        RETURNING id
        """,
        (domain_id, source, destination, owner_id),
    ).fetchone()["id"]


def delete_personal_alias(conn, alias_id: int, owner_id: int) -> str | None:
    """Delete a personal alias if this mailbox owns it; return its address, or None."""
    row = conn.execute(
        "DELETE FROM virtual_aliases WHERE id = %s AND owner_id = %s RETURNING source",
        (alias_id, owner_id),
    ).fetchone()
    return row["source"] if row else None


def forwarding_loop(conn, source: str, starts: list[str]) -> list[str] | None:
    """Return a path of local alias hops from one of ``starts`` back to ``source``, or None.

    Only paths on which no address keeps a copy for itself count: Postfix stops
    at an address that maps to itself, so such a cycle still delivers, while a
    cycle without one makes Postfix refuse the mail ("unreasonable map nesting").
    The rows of ``source`` itself are left out: the caller is replacing them.
    """
    row = conn.execute(
        """
        WITH RECURSIVE walk(address, path) AS (
            SELECT d, ARRAY[d]::text[] FROM unnest(%(starts)s::text[]) AS d
          UNION ALL
            SELECT a.destination, w.path || a.destination::text
              FROM walk w JOIN virtual_aliases a ON a.source = w.address
             WHERE w.address <> %(source)s
               AND a.destination <> a.source
               AND NOT a.destination = ANY(w.path)
               AND cardinality(w.path) < 25
        )
        SELECT path FROM walk w
         WHERE w.address = %(source)s
           AND NOT EXISTS (
                SELECT 1 FROM virtual_aliases c
                 WHERE c.source = ANY(w.path) AND c.source <> %(source)s AND c.destination = c.source)
         LIMIT 1
        """,
        {"source": source, "starts": starts},
    ).fetchone()
    return row["path"] if row else None
