"""Send-as rights: a domain admin lets a mailbox send as an address of its domain, such as info@.

A mailbox always sends as itself, its personal addresses and those addresses on
the alias domains of its domain (Postfix's shipped pgsql-sender-login.cf); these
rules add and remove the rights an admin grants on top, for the pages, the
command line and anything else that calls them.
"""

from __future__ import annotations

from .. import access
from ..access import Actor
from ..addresses import InvalidAddress
from ..addresses import canonical_address
from ..i18n import _
from ..queries import alias_domains as alias_domain_queries
from ..queries import aliases as alias_queries
from ..queries import audit
from ..queries import mailboxes as mailbox_queries
from ..queries import send_as as send_as_queries


class SendAsError(ValueError):
    """A send-as change that cannot be done; the message says why."""


class SendAsRefused(SendAsError):
    """The actor may not change this mailbox's send-as rights (answered with 403)."""


def _owner_of(conn, address: str, domain: str) -> str | None:
    """The mailbox whose own or personal address ``address`` is (directly or through an alias domain)."""
    local, _at, on = address.rpartition("@")
    candidates = [address] if on == domain else [address, f"{local}@{domain}"]
    for candidate in candidates:
        if mailbox_queries.get_mailbox(conn, candidate) is not None or \
                mailbox_queries.pending_removal(conn, candidate) is not None:
            return candidate
        owner = alias_queries.personal_owner(conn, candidate)
        if owner:
            return owner
    return None


def _checked(conn, actor: Actor, mailbox: dict, address: str) -> access.Powers:
    def question(actor_, powers, row, target_roles):
        domains = [row["domain"], *alias_domain_queries.names_for(conn, row["domain"])]
        return access.refusal_to_grant_send_as(actor_, powers, row, target_roles, address, domains,
                                               _owner_of(conn, address, row["domain"]))

    _row, powers = access.lock_and_ask(conn, actor, mailbox, question, SendAsRefused)
    return powers


def grant_send_as(conn, actor: Actor, *, mailbox: dict, address: str, delimiter: str = "+") -> str:
    """Let ``mailbox`` send as ``address`` on the submission service, with its audit row; return the address."""
    try:
        address = canonical_address(address or "")
    except InvalidAddress as exc:
        raise SendAsError(_("This address %(problem)s.", problem=str(exc))) from None
    # bob+x@ delivers to bob: a grant on it would let its holder speak for bob.
    if delimiter and any(ch in address.rpartition("@")[0] for ch in delimiter):
        raise SendAsError(_("The address may not contain %(characters)s.", characters=_(" or ").join(delimiter)))
    with conn.transaction():
        alias_queries.lock_alias_graph(conn)
        powers = _checked(conn, actor, mailbox, address)
        if send_as_queries.grant(conn, mailbox["id"], address) is None:
            raise SendAsError(_("%(mailbox)s may already send as %(address)s.", mailbox=mailbox["email"],
                                address=address))
        audit.record(conn, **access.audit_fields(actor, powers, mailbox["domain_id"]), action="send_as.grant",
                     target=mailbox["email"], domain=mailbox["domain"], summary={"address": address})
    return address


def revoke_send_as(conn, actor: Actor, *, grant_id: int, domain_id: int) -> dict:
    """Take a send-as right back (from the next message on), with its audit row; return it."""
    with conn.transaction():
        alias_queries.lock_alias_graph(conn)
        grant = send_as_queries.lock(conn, grant_id)
        if grant is None or grant["domain_id"] != domain_id:
            raise SendAsError(_("This right no longer exists."))
        mailbox = {"id": grant["mailbox_id"], "email": grant["email"], "domain_id": grant["domain_id"],
                   "domain": grant["domain"]}
        # Taking a right back never needs the address to be free: only who may manage the mailbox counts.
        _row, powers = access.lock_and_ask(conn, actor, mailbox, access.refusal_to_manage_mailbox, SendAsRefused)
        send_as_queries.revoke(conn, grant_id)
        audit.record(conn, **access.audit_fields(actor, powers, grant["domain_id"]), action="send_as.revoke",
                     target=grant["email"], domain=grant["domain"], summary={"address": grant["address"]})
    return grant


def send_as_of(conn, mailbox_id: int) -> list[dict]:
    """The addresses a mailbox was granted, for its dashboard."""
    return send_as_queries.of_mailbox(conn, mailbox_id)


def holders_of(conn, address: str) -> list[dict]:
    """The mailboxes granted ``address``, for the alias's page."""
    return send_as_queries.holders_of(conn, address)
