"""Admin aliases (not a mailbox's own forwarding): one set of rules for the admin pages, the command line and import.

The address and destination checks (hijack, other domains, reserved names,
loops) live in portal/rules/addressing.py and are shared with self-service
forwarding; who may touch which alias is asked of portal.access, under the lock.
"""

from __future__ import annotations

import hashlib

from .. import access
from ..access import Actor
from ..i18n import _
from ..queries import alias_domains as alias_domain_queries
from ..queries import aliases as alias_queries
from ..queries import audit
from ..queries import domains as domain_queries
from ..queries import mailboxes as mailbox_queries
from ..queries import send_as as send_as_queries
from . import addressing


class AliasNotFound(LookupError):
    """No admin alias with that address in that domain."""


class AliasRefused(addressing.AliasRuleError):
    """The actor may not change this alias (answered with 403)."""


def version_of(destinations: list[str]) -> str:
    """What an edit form carries to notice a change made meanwhile: a digest of the destinations."""
    return hashlib.sha256("\n".join(sorted(destinations)).encode()).hexdigest()[:16]


def _is_admin_alias(conn, domain: dict, source: str, rows: list[dict]) -> bool:
    """Whether ``source`` is an alias of ``domain`` or of one of its alias domains at all (not a mailbox's
    forwarding, not another domain's)."""
    if not rows or any(r["destination"] == source for r in rows):
        return False
    if source.partition("@")[2] not in (domain["name"], *alias_domain_queries.names_for(conn, domain["name"])):
        return False
    return mailbox_queries.get_mailbox(conn, source) is None


def _check_access(conn, actor: Actor, domain: dict, source: str, rows: list[dict], reserved: list[str]):
    powers = access.powers_of(conn, actor)
    refusal = access.refusal_to_edit_alias(actor, powers, domain, source, rows, reserved)
    if refusal:
        raise AliasRefused([refusal])
    return powers


def save_alias(conn, actor: Actor, *, domain: dict, source: str, destinations: list[str], create: bool,
               reserved: list[str], delimiter: str, expected_version: str | None = None) -> None:
    """Create (``create``) or replace an alias's destinations in one transaction with its audit row.

    Raises addressing.AliasRuleError listing every problem; nothing is written then."""
    with conn.transaction():
        alias_queries.lock_alias_graph(conn)
        current_domain = domain_queries.lock_domain(conn, domain["id"])
        rows = alias_queries.rows_of(conn, source)
        powers = _check_access(conn, actor, domain, source, rows, reserved)
        if create:
            if not source.startswith("@"):
                addressing.check_new_alias_source(
                    conn, source, domain["name"], [], delimiter,
                    tuple(alias_domain_queries.names_for(conn, domain["name"])))
            elif source[1:] not in (domain["name"], *alias_domain_queries.names_for(conn, domain["name"])):
                raise addressing.AliasRuleError([_("The address must end in @%(domain)s.", domain=domain["name"])],
                                                field="address")
            elif rows:
                raise addressing.AliasRuleError([_("%(domain)s already has a catch-all.", domain=domain["name"])],
                                                field="address")
            limit = current_domain["max_aliases"]
            if limit and alias_queries.count_sources(conn, domain["id"]) >= limit:
                raise addressing.AliasRuleError(
                    [_("%(domain)s already has its limit of %(count)s aliases.", domain=domain["name"], count=limit)],
                    field=None)
        elif not _is_admin_alias(conn, domain, source, rows):
            raise AliasNotFound(source)
        before = [r["destination"] for r in rows]
        if expected_version and not create and version_of(before) != expected_version:
            raise addressing.AliasRuleError([_(
                "Someone else changed %(address)s after you opened this page; it now delivers to %(addresses)s."
                " Make your change again if it is still needed.", address=source, addresses=", ".join(before))])
        addressing.check_alias_destinations(conn, source, destinations, delimiter)
        alias_queries.replace_destinations(conn, domain["id"], source, destinations)
        audit.record(conn, **access.audit_fields(actor, powers, domain["id"]),
                     action="alias.create" if create else "alias.update", target=source, domain=domain["name"],
                     summary={"before": before, "after": sorted(destinations)})


def editable(conn, actor: Actor, domain: dict, source: str, reserved: list[str]) -> bool:
    """Whether the actor may open ``source`` as an admin alias of ``domain`` (for the pages; the rules ask again)."""
    rows = alias_queries.rows_of(conn, source)
    if not _is_admin_alias(conn, domain, source, rows):
        return False
    return access.refusal_to_edit_alias(actor, access.powers_of(conn, actor), domain, source, rows, reserved) is None


def delete_alias(conn, actor: Actor, *, domain: dict, source: str, reserved: list[str]) -> list:
    """Remove an admin alias and all its rows with the audit row; return its former destinations."""
    with conn.transaction():
        alias_queries.lock_alias_graph(conn)
        rows = alias_queries.rows_of(conn, source)
        if not _is_admin_alias(conn, domain, source, rows):
            raise AliasNotFound(source)
        powers = _check_access(conn, actor, domain, source, rows, reserved)
        current = [r["destination"] for r in rows]
        alias_queries.delete_source(conn, source)
        # Nobody keeps sending as an address that is gone (and might one day be someone's).
        revoked = send_as_queries.revoke_address(conn, source)
        summary = {"before": current, **({"send_as_revoked": revoked} if revoked else {})}
        audit.record(conn, **access.audit_fields(actor, powers, domain["id"]), action="alias.delete",
                     target=source, domain=domain["name"], summary=summary)
    return current
