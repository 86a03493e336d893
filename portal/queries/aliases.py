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


def is_personal(conn, source: str) -> bool:
    """Whether this address is someone's personal address."""
    return conn.execute("SELECT EXISTS (SELECT 1 FROM virtual_aliases WHERE source = %s AND owner_id IS NOT NULL)"
                        " AS e", (source,)).fetchone()["e"]


def personal_owner(conn, source: str) -> str | None:
    """The mailbox whose personal address this is, or None."""
    row = conn.execute("SELECT u.email FROM virtual_aliases a JOIN virtual_users u ON u.id = a.owner_id"
                       " WHERE a.source = %s LIMIT 1", (source,)).fetchone()
    return row["email"] if row else None


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


def expand_step(conn, addresses: list[str], assume_exists: str | None = None) -> dict[str, dict]:
    """Return, for each address, what Postfix's alias map makes of it (shipped map semantics).

    ``{"rows": [...], "mailbox": bool, "catch_all": [...]}``: the rows of the
    address, whether it is a mailbox, and the rows of its domain's ``@domain``
    catch-all. An address on an alias domain maps to the same local part on the
    target domain, as if that were its one row (see ``_alias_domain_steps``).
    Disabled mailboxes and domains count as if enabled: the map skips
    them today, but enabling one must not close a circle (the loop check would
    otherwise wave through rows that only come alive later).
    """
    rows = conn.execute(
        "SELECT a.source, a.destination FROM virtual_aliases a WHERE a.source = ANY(%(keys)s)",
        {"keys": addresses + ["@" + a.rpartition("@")[2] for a in addresses]},
    ).fetchall()
    boxes = {r["email"] for r in conn.execute(
        "SELECT email FROM virtual_users WHERE email = ANY(%s)", (addresses,)).fetchall()}
    by_source: dict[str, list[str]] = {}
    for row in rows:
        by_source.setdefault(row["source"], []).append(row["destination"])
    steps = {
        address: {
            "rows": by_source.get(address, []),
            "mailbox": address in boxes,
            "catch_all": by_source.get("@" + address.rpartition("@")[2], []),
        }
        for address in addresses
    }
    steps.update(_alias_domain_steps(conn, [a for a in addresses if a not in by_source and a not in boxes],
                                     by_source, assume_exists))
    return steps


def _alias_domain_steps(conn, addresses: list[str], by_source: dict[str, list[str]],
                        assume_exists: str | None = None) -> dict[str, dict]:
    """The shipped map's step for addresses on an alias domain that have no rows of their own.

    x@alias goes to x@target when that is a mailbox or has rows; otherwise the
    alias domain's own catch-all, else the target's catch-all, applies. Disabled
    alias domains count as enabled, as everything else does here."""
    target_of = {r["name"]: r["target"] for r in conn.execute(
        "SELECT a.name, d.name AS target FROM portal_alias_domains a JOIN virtual_domains d"
        " ON d.id = a.target_domain_id WHERE a.name = ANY(%s)",
        (list({a.rpartition("@")[2] for a in addresses}),)).fetchall()}
    mapped = {a: f"{a.rpartition('@')[0]}@{target_of[a.rpartition('@')[2]]}" for a in addresses
              if a.rpartition("@")[2] in target_of and a.rpartition("@")[0]}
    if not mapped:
        return {}
    keys = [*mapped.values(), *("@" + t for t in set(target_of.values()))]
    target_rows: dict[str, list[str]] = {}
    for row in conn.execute("SELECT source, destination FROM virtual_aliases WHERE source = ANY(%s)",
                            (keys,)).fetchall():
        target_rows.setdefault(row["source"], []).append(row["destination"])
    boxes = {r["email"] for r in conn.execute(
        "SELECT email FROM virtual_users WHERE email = ANY(%s)", (list(mapped.values()),)).fetchall()}
    steps = {}
    for address, target in mapped.items():
        domain = address.rpartition("@")[2]
        # ``assume_exists``: the address whose rows are being written (not in the table yet).
        if target in boxes or target in target_rows or target == assume_exists:
            steps[address] = {"rows": [target], "mailbox": False, "catch_all": []}
        else:
            catch_all = by_source.get("@" + domain) or target_rows.get("@" + target_of[domain], [])
            steps[address] = {"rows": [], "mailbox": False, "catch_all": catch_all}
    return steps


# Far more hops than any sane forwarding chain; past it the change is refused.
MAX_WALK = 2000


def split_extension(address: str, delimiter: str) -> tuple[str, str]:
    """``bob+tag@d`` -> (``bob@d``, ``+tag``) as Postfix's recipient_delimiter splits it; ("address", "") if none."""
    local, _, domain = address.rpartition("@")
    cut = min((i for i in (local.find(ch) for ch in delimiter) if i > 0), default=-1) if delimiter else -1
    if cut < 0:
        return address, ""
    return f"{local[:cut]}@{domain}", local[cut:]


def _with_extension(address: str, extension: str) -> str:
    # propagate_unmatched_extensions (Postfix default: canonical, virtual) appends the
    # extension a lookup did not match to every result.
    if not extension or address.startswith("@"):
        return address
    local, _, domain = address.rpartition("@")
    return f"{local}{extension}@{domain}"


def forwarding_loop(conn, source: str, starts: list[str], delimiter: str = "+") -> list[str] | None:
    """Return a chain of alias hops from ``starts`` back to ``source``, or None.

    The walk follows the shipped alias map the way Postfix expands it: an
    address's own rows, else (with ``recipient_delimiter``) the rows of the
    address without its extension, the extension appended to each result, else
    the address itself when it is a mailbox (delivered), else its domain's
    catch-all. An address that keeps a copy for itself is delivered there, and
    Postfix stops expanding it again, so a circle through it still delivers: the
    walk does not go on through such addresses. A circle back to ``source``
    (or to ``source`` with an extension) through none of them would make Postfix
    answer "unreasonable virtual_alias_maps map nesting" for every message.
    The rows of ``source`` are left out: the caller is replacing them.
    """
    parent: dict[str, str | None] = {start: None for start in starts}
    frontier = list(dict.fromkeys(starts))
    while frontier:
        if len(parent) > MAX_WALK:
            return [*starts, "\u2026", source]
        bases = {address: split_extension(address, delimiter) for address in frontier}
        steps = expand_step(conn, list(dict.fromkeys([*frontier, *(b for b, _ in bases.values())])), source)
        next_frontier = []
        for address in frontier:
            step = steps[address]
            base, extension = bases[address]
            if address == source or (base == source and not step["rows"]):
                chain = [address]
                while parent[chain[-1]] is not None:
                    chain.append(parent[chain[-1]])
                return list(reversed(chain))
            if not step["rows"] and extension:
                step = {**steps[base], "rows": [_with_extension(t, extension) for t in steps[base]["rows"]],
                        "catch_all": [_with_extension(t, extension) for t in steps[base]["catch_all"]]}
                if base in steps[base]["rows"]:
                    continue  # the base keeps a copy: delivered there
            if step["rows"]:
                if address in step["rows"]:
                    continue  # keeps a copy: delivered here, expansion stops
                targets = step["rows"]
            elif step["mailbox"]:
                continue  # delivered
            else:
                targets = step["catch_all"]
            for target in targets:
                if target not in parent:
                    parent[target] = address
                    next_frontier.append(target)
        frontier = next_frontier
    return None


def sources_delivering_to(conn, destination: str, domain_id: int) -> list[dict]:
    """Return the alias addresses of one domain with a row to ``destination``, and whether it is their only one."""
    return conn.execute(
        """
        SELECT a.source, (SELECT count(*) FROM virtual_aliases o WHERE o.source = a.source) = 1 AS only_destination
          FROM virtual_aliases a
         WHERE a.destination = %s AND a.source <> a.destination AND a.domain_id = %s
         ORDER BY a.source
        """,
        (destination, domain_id),
    ).fetchall()


def same_address_forms(conn, address: str) -> set[str]:
    """``address`` and its forms through alias domains: x@target and x@alias are one address to Postfix."""
    local, _at, domain = address.rpartition("@")
    if not local:
        return {address}
    rows = conn.execute(
        "SELECT a.name, d.name AS target FROM portal_alias_domains a"
        " JOIN virtual_domains d ON d.id = a.target_domain_id"
        " WHERE d.name = %(domain)s OR a.name = %(domain)s", {"domain": domain}).fetchall()
    forms = {address}
    for row in rows:
        forms.update({f"{local}@{row['name']}", f"{local}@{row['target']}"})
    return forms


def alias_domain_shadows(conn, addresses: list[str]) -> dict[str, str]:
    """For each of ``addresses`` that has one, an alias written on an alias domain of its domain at the same local
    part: it would take mail meant for a mailbox or personal address created at the address (one query)."""
    rows = conn.execute(
        "SELECT k AS address, min(a.source) AS source FROM unnest(%s::text[]) AS k"
        " JOIN virtual_domains d ON d.name = split_part(k, '@', 2)"
        " JOIN portal_alias_domains x ON x.target_domain_id = d.id"
        " JOIN virtual_aliases a ON a.source = split_part(k, '@', 1) || '@' || x.name GROUP BY k",
        (addresses,)).fetchall()
    return {r["address"]: r["source"] for r in rows}


def alias_domain_shadow(conn, address: str) -> str | None:
    """The alias on an alias domain that takes ``address``'s local part there, if any (alias_domain_shadows)."""
    return alias_domain_shadows(conn, [address]).get(address)


def sources_with_destinations_in(conn, domain: str) -> list[str]:
    """The alias addresses with a destination in this domain (what an alias domain of that name would route)."""
    return [r["source"] for r in conn.execute(
        "SELECT DISTINCT source FROM virtual_aliases WHERE split_part(destination, '@', 2) = %s ORDER BY source",
        (domain,)).fetchall()]


def sources_on_domain(conn, domain_id: int, domain_name: str) -> list[str]:
    """The alias addresses of a mail domain written on one of its alias domains (``domain_name``)."""
    return [r["source"] for r in conn.execute(
        "SELECT DISTINCT source FROM virtual_aliases WHERE domain_id = %s AND split_part(source, '@', 2) = %s"
        " ORDER BY source", (domain_id, domain_name)).fetchall()]


def rows_of(conn, source: str) -> list[dict]:
    """Every row of an alias address: destination, owner and domain."""
    return conn.execute(
        "SELECT id, destination, owner_id, domain_id FROM virtual_aliases WHERE source = %s ORDER BY destination",
        (source,),
    ).fetchall()


def count_sources(conn, domain_id: int) -> int:
    """How many alias addresses a domain has (an address with several rows counts once)."""
    return conn.execute(
        "SELECT count(DISTINCT source) AS n FROM virtual_aliases WHERE domain_id = %s", (domain_id,)
    ).fetchone()["n"]


def delete_source(conn, source: str) -> None:
    """Remove every row of an alias address."""
    conn.execute("DELETE FROM virtual_aliases WHERE source = %s", (source,))


def delete_rows_delivering_to(conn, destination: str) -> list[dict]:
    """Remove the rows of other addresses that deliver to ``destination``; return (source, domain) of each,
    with whether the source is left with no destination at all."""
    removed = conn.execute(
        """
        DELETE FROM virtual_aliases a USING virtual_domains d
         WHERE a.destination = %s AND a.source <> %s AND d.id = a.domain_id
        RETURNING a.source, a.domain_id, d.name AS domain
        """,
        (destination, destination),
    ).fetchall()
    left = {r["source"] for r in conn.execute(
        "SELECT DISTINCT source FROM virtual_aliases WHERE source = ANY(%s)", ([r["source"] for r in removed],)
    ).fetchall()}
    return [{**r, "orphaned": r["source"] not in left} for r in removed]


def delete_rows_delivering_into_domain(conn, domain_id: int) -> list[dict]:
    """Remove other domains' rows that deliver to this domain's mailboxes; return (source, domain) of each."""
    return conn.execute(
        """
        DELETE FROM virtual_aliases a USING virtual_users u, virtual_domains d
         WHERE u.domain_id = %s AND a.destination = u.email AND a.domain_id <> u.domain_id AND d.id = a.domain_id
        RETURNING a.source, a.domain_id, d.name AS domain
        """,
        (domain_id,),
    ).fetchall()


def delete_rows_delivering_into_alias_domain(conn, alias_domain: str, target_domain_id: int) -> list[dict]:
    """Remove other domains' rows that deliver to an address on this alias domain; return (source, domain) of each."""
    return conn.execute(
        """
        DELETE FROM virtual_aliases a USING virtual_domains d
         WHERE split_part(a.destination, '@', 2) = %s AND a.domain_id <> %s AND d.id = a.domain_id
        RETURNING a.source, a.domain_id, d.name AS domain
        """,
        (alias_domain, target_domain_id),
    ).fetchall()


def forwarding_mailboxes(conn, domain_id: int) -> list[str]:
    """The mailboxes of a domain that forward (have alias rows of their own)."""
    return [r["source"] for r in conn.execute(
        "SELECT DISTINCT a.source FROM virtual_aliases a JOIN virtual_users u ON u.email = a.source"
        " WHERE u.domain_id = %s ORDER BY a.source", (domain_id,)).fetchall()]
