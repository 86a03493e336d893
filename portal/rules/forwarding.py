"""A mailbox's own forwarding and personal addresses, changed by its owner on the account pages."""

from __future__ import annotations

from .. import access
from .. import notices
from ..access import Actor
from ..addresses import InvalidAddress
from ..addresses import canonical_address
from ..i18n import _
from ..queries import aliases as alias_queries
from ..queries import audit
from ..queries import domains as domain_queries
from ..queries import mailboxes as mailbox_queries
from . import addressing
from .addressing import AliasRuleError
from .addressing import Forwarding


def _own_mailbox(conn, actor: Actor) -> dict:
    mailbox = mailbox_queries.lock_mailbox(conn, actor.mailbox_id) if actor.mailbox_id else None
    if mailbox is None:
        raise AliasRuleError([_("The mailbox no longer exists.")])
    return mailbox


def current_forwarding(conn, address: str) -> Forwarding:
    """Where mail for ``address`` goes now, as the forwarding page shows it."""
    return Forwarding.from_rows(address, alias_queries.destinations(conn, address))


def _replace_forwarding(conn, mailbox: dict, wanted: Forwarding, max_destinations: int, delimiter: str,
                        who: dict) -> tuple[Forwarding, Forwarding]:
    """Check and store a locked mailbox's forwarding with its audit row (``who``: its actor columns)."""
    address = mailbox["email"]
    addressing.check_forwarding(conn, address, wanted, max_destinations, delimiter)
    before = current_forwarding(conn, address)
    after = Forwarding.from_rows(address, wanted.rows(address))
    if after != before:
        alias_queries.replace_destinations(conn, mailbox["domain_id"], address, wanted.rows(address))
        audit.record(
            conn, **who, action="forwarding.update", target=address, domain=mailbox["domain"],
            summary={"before": {"destinations": list(before.destinations), "keep_copy": before.keep_copy},
                     "after": {"destinations": list(after.destinations), "keep_copy": after.keep_copy}},
        )
        if after.destinations:
            # Mail now goes somewhere new: the owner hears of it, and so does their recovery address.
            notices.queue(conn, mailbox, "forwarding_changed", notices.forwarding_changed, address,
                          list(after.destinations), after.keep_copy, notices.Change.of_audit(who))
    return before, after


def save_forwarding(conn, actor: Actor, wanted: Forwarding, max_destinations: int,
                    delimiter: str = "+") -> tuple[Forwarding, Forwarding]:
    """Replace the actor's own forwarding in one transaction; return (before, after).

    Unchanged means untouched: rows the page cannot show (an adopted
    "alice -> alice" alone, say) stay as they are."""
    with conn.transaction():
        alias_queries.lock_alias_graph(conn)
        mailbox = _own_mailbox(conn, actor)
        return _replace_forwarding(conn, mailbox, wanted, max_destinations, delimiter,
                                   {"actor": mailbox["email"], "actor_role": "user",
                                    "client_addr": actor.client_addr})


class ForwardingRefused(AliasRuleError):
    """The actor may not manage this mailbox (answered like a missing one)."""

    def __init__(self, message: str):
        super().__init__([message])


def save_forwarding_of(conn, actor: Actor, mailbox: dict, wanted: Forwarding, max_destinations: int,
                       delimiter: str = "+") -> tuple[Forwarding, Forwarding]:
    """An administrator replaces the forwarding of a mailbox they may manage, by the same checks as its owner
    (no loop, no other mailbox's mail taken, at most ``max_destinations``); return (before, after)."""
    with conn.transaction():
        alias_queries.lock_alias_graph(conn)
        row, powers = access.lock_and_ask(conn, actor, mailbox, access.refusal_to_manage_mailbox,
                                          ForwardingRefused)
        return _replace_forwarding(conn, row, wanted, max_destinations, delimiter,
                                   access.audit_fields(actor, powers, row["domain_id"]))


def add_personal_alias(conn, actor: Actor, local_part: str, *, reserved: list[str], delimiter: str) -> str:
    """Create a personal address in the actor's own domain that delivers to the actor's mailbox; return it."""
    with conn.transaction():
        alias_queries.lock_alias_graph(conn)
        mailbox = _own_mailbox(conn, actor)
        domain = domain_queries.get_domain(conn, mailbox["domain_id"])
        try:
            source = canonical_address(f"{local_part.strip(' ')}@{domain['name']}")
        except InvalidAddress:
            raise AliasRuleError([_("Use letters, digits and . _ - + only, for example shop.alice.")]) from None
        if not domain["allow_personal_aliases"]:
            raise AliasRuleError([_("Personal addresses are not enabled for %(domain)s.", domain=domain["name"])])
        limit = domain["max_personal_aliases"]
        if alias_queries.count_personal_aliases(conn, mailbox["id"]) >= limit:
            raise AliasRuleError([_("You already have the most personal addresses allowed (%(limit)s).", limit=limit)])
        addressing.check_new_alias_source(conn, source, domain["name"], reserved, delimiter)
        addressing.check_not_shadowed(conn, source)
        addressing.check_new_alias_target(conn, source, mailbox["email"], delimiter)
        alias_queries.add_personal_alias(conn, domain["id"], source, mailbox["email"], mailbox["id"])
        audit.record(conn, actor=mailbox["email"], actor_role="user", client_addr=actor.client_addr,
                     action="alias.personal.add", target=source, domain=domain["name"],
                     summary={"destination": mailbox["email"]})
    return source


def delete_personal_alias(conn, actor: Actor, alias_id: int) -> str | None:
    """Remove one of the actor's own personal addresses; return it (None: no such address of theirs)."""
    with conn.transaction():
        alias_queries.lock_alias_graph(conn)
        mailbox = _own_mailbox(conn, actor)
        source = alias_queries.delete_personal_alias(conn, alias_id, mailbox["id"])
        if source is None:
            return None
        audit.record(conn, actor=mailbox["email"], actor_role="user", client_addr=actor.client_addr,
                     action="alias.personal.delete", target=source, domain=mailbox["domain"],
                     summary={"destination": mailbox["email"]})
    return source
