"""Alias domains: example.org delivering to the same mailboxes as example.com, address by address.

A superadmin links, disables, enables and deletes them (pages, command line and
CSV import call these functions). Postfix's shipped maps then map x@example.org
to x@example.com where that address exists (mailbox, alias or personal
address), apply the target's catch-all only where it has one, and let an
explicit alias on the alias domain win (portal/rules/aliases.py).
"""

from __future__ import annotations

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
from .domains import domain_name


class AliasDomainError(ValueError):
    """An alias domain change that cannot be done; the message says why."""


class AliasDomainRefused(AliasDomainError):
    """Only a superadmin links and unlinks alias domains (answered with 403)."""


class AliasDomainNotFound(LookupError):
    """No alias domain of that name."""


def _superadmin_powers(conn, actor: Actor) -> access.Powers:
    powers = access.powers_of(conn, actor)
    refusal = access.refusal_to_manage_alias_domains(powers)
    if refusal:
        raise AliasDomainRefused(refusal)
    return powers


def _loop_problem(conn, name: str, delimiter: str) -> str | None:
    """A circle the alias domain would close: an alias delivering to x@name, where x@target leads back."""
    circle = addressing.first_circle(conn, alias_queries.sources_with_destinations_in(conn, name), delimiter)
    if circle:
        source, path = circle
        return _("With this alias domain, mail would go round in a circle (%(hops)s) and never arrive."
                 " Change that forwarding first.", hops=" \u2192 ".join([source, *path]))
    return None


def create_alias_domain(conn, actor: Actor, *, name: str, target: str, active: bool = True,
                        delimiter: str = "+") -> str:
    """Link ``name`` as an alias domain of the mail domain ``target``; return its canonical name."""
    name, target = domain_name(name), domain_name(target)
    with conn.transaction():
        alias_queries.lock_alias_graph(conn)
        powers = _superadmin_powers(conn, actor)
        if name == target:
            raise AliasDomainError(_("A domain cannot be an alias domain of itself."))
        target_row = domain_queries.get_domain_by_name(conn, target)
        if target_row is None:
            if alias_domain_queries.get_by_name(conn, target) is not None:
                raise AliasDomainError(_("%(domain)s is an alias domain itself; link to the domain it mirrors.",
                                         domain=target))
            raise AliasDomainError(_("%(domain)s is not a domain here.", domain=target))
        domain_queries.lock_domain(conn, target_row["id"])
        # Mail for a deleted mailbox of that name still waits for its purge: routing its
        # addresses elsewhere would hand the former owner's mail to someone else.
        if mailbox_queries.pending_removals_in_domain(conn, name):
            raise AliasDomainError(_("Mailboxes of %(domain)s were deleted and their mail is still kept; it cannot"
                                     " become an alias domain until that mail is purged.", domain=name))
        if alias_domain_queries.create(conn, name, target_row["id"], active) is None:
            raise AliasDomainError(_("%(domain)s is already in use as a domain or an alias domain.", domain=name))
        problem = _loop_problem(conn, name, delimiter) if active else None
        if problem:
            raise AliasDomainError(problem)
        audit.record(conn, **access.audit_fields(actor, powers, target_row["id"]), action="alias_domain.create",
                     target=name, domain=target, summary={"target": target, "active": active})
    return name


def set_alias_domain_active(conn, actor: Actor, *, name: str, active: bool, delimiter: str = "+") -> dict:
    """Enable or disable an alias domain (delivery through it stops at once when disabled); return it."""
    with conn.transaction():
        alias_queries.lock_alias_graph(conn)
        powers = _superadmin_powers(conn, actor)
        row = alias_domain_queries.lock_by_name(conn, name)
        if row is None:
            raise AliasDomainNotFound(name)
        if row["active"] == active:
            return row
        alias_domain_queries.set_active(conn, row["id"], active)
        problem = _loop_problem(conn, name, delimiter) if active else None
        if problem:
            raise AliasDomainError(problem)
        audit.record(conn, **access.audit_fields(actor, powers, row["target_domain_id"]),
                     action="alias_domain.enable" if active else "alias_domain.disable", target=name,
                     domain=row["target"], summary={"target": row["target"]})
    return {**row, "active": active}


def delete_alias_domain(conn, actor: Actor, *, name: str) -> list[str]:
    """Unlink an alias domain and remove the explicit aliases on it; return their addresses."""
    with conn.transaction():
        alias_queries.lock_alias_graph(conn)
        powers = _superadmin_powers(conn, actor)
        row = alias_domain_queries.lock_by_name(conn, name)
        if row is None:
            raise AliasDomainNotFound(name)
        removed = alias_domain_queries.delete_explicit_aliases(conn, row["target_domain_id"], name)
        # The name is no longer this server's: nobody keeps sending as its addresses.
        revoked = send_as_queries.revoke_on_domain(conn, name)
        alias_domain_queries.delete(conn, row["id"])
        audit.record(conn, **access.audit_fields(actor, powers, row["target_domain_id"]), action="alias_domain.delete",
                     target=name, domain=row["target"],
                     summary={"target": row["target"], "removed_aliases": removed,
                              "send_as_revoked": sorted(f"{r['email']} \u2192 {r['address']}" for r in revoked)})
    return removed


def alias_domains_of(conn, domain_id: int) -> list[dict]:
    """The alias domains of a mail domain, for its pages (the actor's right to see the domain is the view's)."""
    return alias_domain_queries.of_domain(conn, domain_id)

