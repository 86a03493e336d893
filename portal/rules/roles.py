"""Granting and revoking the portal's roles: one set of rules for the admin pages and the command line."""

from __future__ import annotations

from .. import access
from ..access import Actor
from ..addresses import InvalidAddress
from ..addresses import canonical_address
from ..addresses import canonical_domain
from ..i18n import _
from ..i18n import _l
from ..queries import audit
from ..queries import domains as domain_queries
from ..queries import mailboxes as mailbox_queries
from ..queries import roles as role_queries

# Names as people type them (command line, forms) and as the database stores them.
ROLE_NAMES = {"superadmin": "superadmin", "domain-admin": "domain_admin", "helpdesk": "helpdesk"}
ROLE_LABELS = {"superadmin": _l("superadmin"), "domain_admin": _l("domain admin"), "helpdesk": _l("helpdesk")}


def role_label(role: str) -> str:
    """A stored role name as people read it, in their language."""
    return str(ROLE_LABELS.get(role, role.replace("_", " ")))


class RoleError(ValueError):
    """A grant or revoke that cannot be done; the message says why."""


class InvalidRoleInput(RoleError):
    """The role, address or domain named is not valid, or names nothing (the API answers 400)."""


def resolve(conn, address: str, role: str, domain: str | None) -> tuple[dict, str, dict | None]:
    """Check a role change's arguments; return (mailbox, stored role name, domain row or None)."""
    role_name = ROLE_NAMES.get(role, role if role in ROLE_LABELS else None)
    if role_name is None:
        raise InvalidRoleInput(_("There is no role %(role)s; use superadmin, domain-admin or helpdesk.",
                                 role=repr(role)))
    try:
        email = canonical_address(address)
    except InvalidAddress as exc:
        raise InvalidRoleInput(_("%(address)s %(problem)s.", address=repr(address), problem=str(exc))) from None
    mailbox = mailbox_queries.get_mailbox(conn, email)
    if mailbox is None:
        raise InvalidRoleInput(_("There is no mailbox %(address)s; roles belong to mailboxes.", address=email))
    domain = (domain or "").strip()
    if role_name == "superadmin" and domain:
        raise InvalidRoleInput(_("A superadmin holds every domain; give no domain."))
    if role_name == "domain_admin" and not domain:
        raise InvalidRoleInput(_("A domain admin needs a domain."))
    domain_row = None
    if domain:
        try:
            name = canonical_domain(domain)
        except InvalidAddress as exc:
            raise InvalidRoleInput(_("%(domain)s %(problem)s.", domain=repr(domain), problem=str(exc))) from None
        domain_row = domain_queries.get_domain_by_name(conn, name)
        if domain_row is None:
            raise InvalidRoleInput(_("There is no domain %(domain)s.", domain=name))
    return mailbox, role_name, domain_row


def lock_roles(conn) -> None:
    """Serialise every change that adds or takes away a role, or a superadmin's sign-in.

    Taken first, before any mailbox row, by every rule that may need it (grant,
    revoke, disable, delete), so that they all wait in the same order and never
    deadlock on each other."""
    conn.execute("LOCK TABLE portal_roles IN SHARE ROW EXCLUSIVE MODE")


def keep_a_superadmin(conn, mailbox: dict) -> None:
    """Refuse (RoleError) to take away the last superadmin who can still sign in; call inside the transaction
    that would revoke, disable or delete ``mailbox``.

    The table lock serialises such changes, so two superadmins cannot each remove
    the other at the same moment."""
    conn.execute("LOCK TABLE portal_roles IN SHARE ROW EXCLUSIVE MODE")
    if role_queries.is_superadmin(conn, mailbox["id"]) and not role_queries.other_usable_superadmins(
            conn, mailbox["id"]):
        raise RoleError(_("%(address)s is the last superadmin who can sign in; make someone else superadmin first.",
                          address=mailbox["email"]))


def keep_a_superadmin_outside(conn, domain: dict) -> None:
    """Refuse (RoleError) to disable or delete the domain of the last superadmins who can sign in."""
    conn.execute("LOCK TABLE portal_roles IN SHARE ROW EXCLUSIVE MODE")
    counts = conn.execute(
        """
        SELECT count(*) FILTER (WHERE u.domain_id = %(d)s) AS inside,
               count(*) FILTER (WHERE u.domain_id <> %(d)s AND u.active AND dd.active) AS outside
          FROM portal_roles r JOIN virtual_users u ON u.id = r.user_id JOIN virtual_domains dd ON dd.id = u.domain_id
         WHERE r.role = 'superadmin'
        """,
        {"d": domain["id"]},
    ).fetchone()
    if counts["inside"] and not counts["outside"]:
        raise RoleError(_("%(domain)s holds the last superadmin who can sign in; make someone outside it superadmin"
                          " first.", domain=domain["name"]))


def _record(conn, action, mailbox, role_name, domain_row, actor: Actor, powers) -> None:
    audit.record(conn, **access.audit_fields(actor, powers), action=action,
                 target=mailbox["email"], domain=domain_row["name"] if domain_row else "",
                 summary={"role": role_name, "in": domain_row["name"] if domain_row else "every domain"})


def _superadmin_powers(conn, actor: Actor):
    # Read under the same table lock as every role change: a superadmin revoked at
    # this moment cannot still grant.
    lock_roles(conn)
    powers = access.powers_of(conn, actor)
    if not powers.superadmin:
        raise RoleError(_("Only a superadmin can give or take back roles."))
    return powers


def grant(conn, actor: Actor, *, address: str, role: str, domain: str | None) -> tuple[bool, dict, str, dict | None]:
    """Give a role in one transaction with its audit row; (granted, mailbox, role, domain row).

    ``granted`` is False when the role was held already (nothing is written then)."""
    with conn.transaction():
        powers = _superadmin_powers(conn, actor)
        mailbox, role_name, domain_row = resolve(conn, address, role, domain)
        if mailbox["password_must_change"]:
            # Whoever reset it may still know its one-time password.
            raise RoleError(_("%(address)s has a one-time password; its owner must choose a new one before it can hold"
                              " a role.", address=mailbox["email"]))
        granted = role_queries.grant(conn, mailbox["id"], role_name, domain_row["id"] if domain_row else None)
        if granted:
            _record(conn, "role.grant", mailbox, role_name, domain_row, actor, powers)
    return granted, mailbox, role_name, domain_row


def revoke(conn, actor: Actor, *, address: str, role: str, domain: str | None) -> tuple[dict, str, dict | None]:
    """Take a role back in one transaction with its audit row; never the last superadmin's."""
    with conn.transaction():
        powers = _superadmin_powers(conn, actor)
        mailbox, role_name, domain_row = resolve(conn, address, role, domain)
        if role_name == "superadmin":
            keep_a_superadmin(conn, mailbox)
        if not role_queries.revoke(conn, mailbox["id"], role_name, domain_row["id"] if domain_row else None):
            if domain_row:
                raise RoleError(_("%(address)s is not %(role)s in %(domain)s.", address=mailbox["email"],
                                  role=str(ROLE_LABELS[role_name]), domain=domain_row["name"]))
            raise RoleError(_("%(address)s is not %(role)s.", address=mailbox["email"],
                              role=str(ROLE_LABELS[role_name])))
        _record(conn, "role.revoke", mailbox, role_name, domain_row, actor, powers)
    return mailbox, role_name, domain_row
