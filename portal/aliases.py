"""Admin aliases (not a mailbox's own forwarding): one set of rules for the admin pages, the command line and import.

The checks themselves (hijack, other domains, reserved names, loops) live in
portal/aliasrules.py and are shared with self-service forwarding.
"""

from __future__ import annotations

from . import aliasrules
from .i18n import _
from .queries import aliases as alias_queries
from .queries import audit
from .queries import mailboxes as mailbox_queries


class AliasNotFound(LookupError):
    """No admin alias with that address in that domain."""


def version_of(destinations: list[str]) -> str:
    """What an edit form carries to notice a change made meanwhile: a digest of the destinations."""
    import hashlib

    return hashlib.sha256("\n".join(sorted(destinations)).encode()).hexdigest()[:16]


def save_alias(conn, *, domain: dict, source: str, destinations: list[str], create: bool, reserved: list[str],
               delimiter: str, actor: str, actor_role: str, client_addr: str | None,
               expected_version: str | None = None) -> None:
    """Create (``create``) or replace an alias's destinations in one transaction with its audit row.

    Raises aliasrules.AliasRuleError listing every problem; nothing is written then."""
    with conn.transaction():
        alias_queries.lock_alias_graph(conn)
        row = conn.execute(
            "SELECT max_aliases FROM virtual_domains WHERE id = %s FOR UPDATE", (domain["id"],)
        ).fetchone()
        if create:
            if not source.startswith("@"):
                aliasrules.check_new_alias_source(conn, source, domain["name"], reserved, delimiter)
            elif alias_queries.source_exists(conn, source):
                raise aliasrules.AliasRuleError([_("%(domain)s already has a catch-all.", domain=domain["name"])])
            count = conn.execute(
                "SELECT count(DISTINCT source) AS n FROM virtual_aliases WHERE domain_id = %s", (domain["id"],)
            ).fetchone()["n"]
            if row["max_aliases"] and count >= row["max_aliases"]:
                limit = row["max_aliases"]
                raise aliasrules.AliasRuleError(
                    [_("%(domain)s already has its limit of %(count)s aliases.", domain=domain["name"], count=limit)])
        elif not editable(conn, domain, source):
            raise AliasNotFound(source)
        before = alias_queries.destinations(conn, source)
        if expected_version and not create and version_of(before) != expected_version:
            raise aliasrules.AliasRuleError([_(
                "Someone else changed %(address)s after you opened this page; it now delivers to %(addresses)s."
                " Make your change again if it is still needed.", address=source, addresses=", ".join(before))])
        aliasrules.check_alias_destinations(conn, source, destinations)
        alias_queries.replace_destinations(conn, domain["id"], source, destinations)
        audit.record(conn, actor=actor, actor_role=actor_role, client_addr=client_addr,
                     action="alias.create" if create else "alias.update", target=source, domain=domain["name"],
                     summary={"before": before, "after": sorted(destinations)})


def editable(conn, domain: dict, source: str) -> bool:
    """Whether ``source`` is an admin alias of ``domain`` (not a mailbox's forwarding, not another domain's)."""
    current = alias_queries.destinations(conn, source)
    if not current or source in current:
        return False
    if not (source.endswith("@" + domain["name"]) or source == "@" + domain["name"]):
        return False
    return mailbox_queries.get_mailbox(conn, source) is None


def delete_alias(conn, *, domain: dict, source: str, actor: str, actor_role: str, client_addr: str | None) -> list:
    """Remove an admin alias and all its rows with the audit row; return its former destinations."""
    with conn.transaction():
        alias_queries.lock_alias_graph(conn)
        if not editable(conn, domain, source):
            raise AliasNotFound(source)
        current = alias_queries.destinations(conn, source)
        conn.execute("DELETE FROM virtual_aliases WHERE source = %s", (source,))
        audit.record(conn, actor=actor, actor_role=actor_role, client_addr=client_addr, action="alias.delete",
                     target=source, domain=domain["name"], summary={"before": current})
    return current
