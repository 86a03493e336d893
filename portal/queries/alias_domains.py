"""SQL for portal_alias_domains: example.org delivering to the same mailboxes as example.com."""

from __future__ import annotations

from psycopg import errors

_SELECT = ("SELECT a.id, a.name, a.active, a.created_at, a.target_domain_id, d.name AS target,"
           " d.active AS target_active FROM portal_alias_domains a JOIN virtual_domains d ON d.id = a.target_domain_id")
_OF_DOMAIN = _SELECT + " WHERE a.target_domain_id = %s ORDER BY a.name"
_EVERY = _SELECT + " ORDER BY a.name"
_BY_NAME = _SELECT + " WHERE a.name = %s"
_LOCK_BY_NAME = _SELECT + " WHERE a.name = %s FOR UPDATE OF a"


def of_domain(conn, domain_id: int) -> list[dict]:
    """The alias domains of one mail domain, by name."""
    return conn.execute(
        _OF_DOMAIN, (domain_id,),
    ).fetchall()


def of_domains(conn, domain_ids: list[int]) -> dict[int, list[str]]:
    """The alias domain names of each of these mail domains (for the domain list)."""
    found: dict[int, list[str]] = {}
    for row in conn.execute(
        "SELECT target_domain_id, name FROM portal_alias_domains WHERE target_domain_id = ANY(%s) ORDER BY name",
        (domain_ids,),
    ).fetchall():
        found.setdefault(row["target_domain_id"], []).append(row["name"])
    return found


def every(conn) -> list[dict]:
    """Every alias domain with its target, by name."""
    return conn.execute(_EVERY).fetchall()


def get_by_name(conn, name: str) -> dict | None:
    """One alias domain with its target's name, or None."""
    return conn.execute(_BY_NAME, (name,)).fetchone()


def lock_by_name(conn, name: str) -> dict | None:
    """One alias domain, locked for update until the transaction ends, or None."""
    return conn.execute(_LOCK_BY_NAME, (name,)).fetchone()


def create(conn, name: str, target_domain_id: int, active: bool) -> int | None:
    """Insert an alias domain; its id, or None when the name is taken (by an alias domain or a mail domain)."""
    try:
        with conn.transaction():
            row = conn.execute(
                "INSERT INTO portal_alias_domains (name, target_domain_id, active) VALUES (%s, %s, %s)"
                " ON CONFLICT (name) DO NOTHING RETURNING id",
                (name, target_domain_id, active),
            ).fetchone()
    except errors.UniqueViolation:
        return None
    return row["id"] if row else None


def set_active(conn, alias_domain_id: int, active: bool) -> None:
    """Enable or disable an alias domain."""
    conn.execute("UPDATE portal_alias_domains SET active = %s WHERE id = %s", (active, alias_domain_id))


def delete(conn, alias_domain_id: int) -> None:
    """Remove an alias domain."""
    conn.execute("DELETE FROM portal_alias_domains WHERE id = %s", (alias_domain_id,))


def delete_explicit_aliases(conn, target_domain_id: int, name: str) -> list[str]:
    """Remove the alias rows whose source is on this alias domain; return their addresses."""
    rows = conn.execute(
        "DELETE FROM virtual_aliases WHERE domain_id = %s AND split_part(source, '@', 2) = %s RETURNING source",
        (target_domain_id, name),
    ).fetchall()
    return sorted({r["source"] for r in rows})


def names_for(conn, domain_name: str) -> list[str]:
    """The alias domain names that mirror this mail domain (enabled or not)."""
    return [r["name"] for r in conn.execute(
        "SELECT a.name FROM portal_alias_domains a JOIN virtual_domains d ON d.id = a.target_domain_id"
        " WHERE d.name = %s ORDER BY a.name", (domain_name,)).fetchall()]


def targets_of(conn, names: list[str]) -> dict[str, str]:
    """For each of these names that is an alias domain, the name of its target domain."""
    return {r["name"]: r["target"] for r in conn.execute(
        "SELECT a.name, d.name AS target FROM portal_alias_domains a JOIN virtual_domains d"
        " ON d.id = a.target_domain_id WHERE a.name = ANY(%s)", (names,)).fetchall()}
