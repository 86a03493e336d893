"""Who may do what: decorators for the views, and the object-level questions the rules ask.

The decorators decide which pages a signed-in user may open at all. What an
actor may do to one mailbox, alias or address is answered by the ``refusal_*``
functions below, from facts the rule layer has read under its locks (the
actor's :class:`Powers`, the target's roles). Each returns None when the action
is allowed, or the reason it is not, in words for the user. Views may ask them
too, but only to decide what to show; the rules ask again under the lock.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from dataclasses import field
from urllib.parse import urlsplit

from flask import abort
from flask import redirect
from flask import url_for
from flask_login import current_user
from flask_login import login_required

from .i18n import _
from .sessions import token_hash


def signed_in(view):
    """Any signed-in mailbox, including one that must change its password first."""
    return login_required(view)


def enrolment_allowed(view):
    """A signed-in mailbox with no pending forced password change, enrolled or not: the pages where a role holder
    sets up the second factor their role asks for."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if current_user.is_authenticated and current_user.must_change_password:
            return redirect(url_for("account.password"))
        return view(*args, **kwargs)

    return login_required(wrapped)


def account_required(view):
    """A signed-in mailbox that has no pending forced password change, and has enrolled a second factor if one
    of its roles asks for it (until then it reaches only the enrolment page)."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if current_user.is_authenticated and current_user.must_change_password:
            return redirect(url_for("account.password"))
        if current_user.is_authenticated and current_user.must_enrol_second_factor:
            return redirect(url_for("account.security"))
        return view(*args, **kwargs)

    return login_required(wrapped)


def _role_rule(allowed, doc: str):
    """A decorator that lets a view run only for a signed-in user for whom ``allowed(user)`` is true (else 403)."""

    def decorator(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            if not allowed(current_user):
                abort(403)
            return view(*args, **kwargs)

        return account_required(wrapped)

    decorator.__doc__ = doc
    return decorator


admin_required = _role_rule(
    lambda user: user.is_admin,
    "A superadmin, or a domain admin (what of the domain is checked by the view's data).",
)
superadmin_required = _role_rule(lambda user: user.is_superadmin, "A superadmin.")
support_required = _role_rule(
    lambda user: user.is_support,
    "Helpdesk, domain admin or superadmin (which mailboxes is checked against ``support_scope``).",
)


def safe_next_url(target: str | None) -> str | None:
    """Return ``target`` if it is a path on this site, else None (no open redirects)."""
    if not target or len(target) > 2048:
        return None
    if any(ord(ch) < 0x20 or ch == "\\" for ch in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


@dataclass(frozen=True)
class TokenScope:
    """What an API token narrows its holder's powers to: some domains (None: all of theirs), or reading only."""

    token_id: int
    domain_ids: frozenset[int] | None = None
    read_only: bool = False


@dataclass(frozen=True)
class Actor:
    """Who acts: a signed-in mailbox (its roles are read by the rule, under its locks), the holder of an API
    token (the same, narrowed by ``token``), or the command line."""

    address: str  # the mailbox's address, or "cli"
    client_addr: str | None = None
    mailbox_id: int | None = None  # None for the command line
    token: TokenScope | None = None
    session_token_hash: bytes | None = None  # the acting portal session's, so a rule can end the user's others

    @classmethod
    def of_token(cls, address: str, mailbox_id: int, scope: TokenScope, client_addr: str | None) -> Actor:
        """The holder of an API token, acting through it from ``client_addr``."""
        return cls(address, client_addr, mailbox_id, scope)

    @classmethod
    def command_line(cls) -> Actor:
        """The operator at the server's command line (flask commands, CSV import): every power."""
        return cls("cli")

    @classmethod
    def of_user(cls, user, client_addr: str | None) -> Actor:
        """The signed-in mailbox ``user`` (a sessions.MailboxUser) acting from ``client_addr``."""
        return cls(user.email, client_addr, user.mailbox_id, session_token_hash=token_hash(user.session_token))

    @property
    def is_command_line(self) -> bool:
        return self.mailbox_id is None


@dataclass(frozen=True)
class Powers:
    """What an actor holds, read inside the acting transaction (roles share-locked)."""

    superadmin: bool = False
    admin_of: frozenset[int] = field(default_factory=frozenset)  # domain ids
    helpdesk_of: frozenset[int] = field(default_factory=frozenset)
    helpdesk_everywhere: bool = False

    @classmethod
    def from_roles(cls, roles: list[dict]) -> Powers:
        """Powers from portal_roles rows (role, domain_id)."""
        return cls(
            superadmin=any(r["role"] == "superadmin" for r in roles),
            admin_of=frozenset(r["domain_id"] for r in roles if r["role"] == "domain_admin"),
            helpdesk_of=frozenset(r["domain_id"] for r in roles if r["role"] == "helpdesk" and r["domain_id"]),
            helpdesk_everywhere=any(r["role"] == "helpdesk" and r["domain_id"] is None for r in roles),
        )

    def administers(self, domain_id: int) -> bool:
        """Superadmin, or domain admin of this domain."""
        return self.superadmin or domain_id in self.admin_of

    def helps_with(self, domain_id: int) -> bool:
        """May use the helpdesk actions in this domain."""
        return self.administers(domain_id) or self.helpdesk_everywhere or domain_id in self.helpdesk_of

    def narrowed_to(self, domain_ids: frozenset[int] | None) -> Powers:
        """These powers within ``domain_ids`` only (None: unchanged). Nothing outside a domain survives:
        a superadmin narrowed to a domain administers that domain and creates no domains."""
        if domain_ids is None:
            return self
        return Powers(
            admin_of=domain_ids if self.superadmin else self.admin_of & domain_ids,
            helpdesk_of=domain_ids if self.helpdesk_everywhere else self.helpdesk_of & domain_ids,
        )

    def role_in(self, domain_id: int | None) -> str:
        """The role by which these powers act in a domain, as the audit log names it."""
        if self.superadmin:
            return "superadmin"
        if domain_id is not None and domain_id in self.admin_of:
            return "domain_admin"
        if self.helpdesk_everywhere or domain_id in self.helpdesk_of:
            return "helpdesk"
        return "user"


COMMAND_LINE_POWERS = Powers(superadmin=True)


def powers_of(conn, actor: Actor) -> Powers:
    """The actor's powers, read now and share-locked until the transaction ends (call inside it)."""
    from .queries import roles

    if actor.is_command_line:
        return COMMAND_LINE_POWERS
    powers = Powers.from_roles(roles.roles_of_locked(conn, actor.mailbox_id))
    if actor.token is None:
        return powers
    # A read-only token changes nothing, whichever rule it reaches.
    return Powers() if actor.token.read_only else powers.narrowed_to(actor.token.domain_ids)


def reading_powers(conn, actor: Actor, held: list[dict] | None = None) -> Powers:
    """What the actor may see: its powers narrowed to its token's domains, read-only tokens included
    (``held``: its roles, when this request has read them already)."""
    from .queries import roles

    if actor.is_command_line:
        return COMMAND_LINE_POWERS
    powers = Powers.from_roles(roles.roles_of(conn, actor.mailbox_id) if held is None else held)
    return powers.narrowed_to(actor.token.domain_ids) if actor.token else powers


def lock_and_ask(conn, actor: Actor, mailbox: dict, question, refused: type[Exception]) -> tuple[dict, Powers]:
    """Lock the mailbox row, then ask ``question`` (a ``refusal_to_*`` function) under that lock, with the
    actor's powers and the mailbox's roles as they are now; raise ``refused`` with its answer, or return
    (the mailbox row as it is now, the actor's powers)."""
    from .queries import mailboxes
    from .queries import roles

    row = mailboxes.lock_mailbox(conn, mailbox["id"])
    if row is None:
        raise refused(_("The mailbox no longer exists."))
    powers = powers_of(conn, actor)
    refusal = question(actor, powers, row, roles.roles_of_locked(conn, row["id"]))
    if refusal:
        raise refused(refusal)
    return row, powers


def audit_fields(actor: Actor, powers: Powers, domain_id: int | None = None) -> dict:
    """The actor, role and client address columns of an audit row."""
    role = "cli" if actor.is_command_line else powers.role_in(domain_id)
    return {"actor": actor.address, "actor_role": role, "client_addr": actor.client_addr,
            "token_id": actor.token.token_id if actor.token else None}


def refusal_to_manage_mailbox(actor: Actor, powers: Powers, mailbox: dict, target_roles: list[dict]) -> str | None:
    """May the actor change or delete this mailbox as an administrator? (``target_roles``: the mailbox's roles.)"""
    if not powers.administers(mailbox["domain_id"]):
        return _("You do not administer %(domain)s.", domain=mailbox["domain"])
    if not powers.superadmin and target_roles and mailbox["email"] != actor.address:
        return _("Only a superadmin can change the mailbox of an admin or helpdesk member.")
    return None


def refusal_to_change_own_mailbox(actor: Actor, mailbox: dict, *, password: bool, active: bool) -> str | None:
    """One's own mailbox is changed on one's own account pages, where the current password is asked again."""
    if mailbox["email"] != actor.address:
        return None
    if password:
        return _("Change your own password on your account page, where your current password is asked for.")
    if not active:
        return _("You cannot disable the mailbox you are signed in with.")
    return None


def refusal_to_help(actor: Actor, powers: Powers, mailbox: dict, target_roles: list[dict]) -> str | None:
    """May the actor reset, unlock, disable or enable this mailbox from the helpdesk pages?"""
    if mailbox["email"] == actor.address:
        return _("Use your own account pages for your own mailbox.")
    if not powers.helps_with(mailbox["domain_id"]):
        return _("You do not help with mailboxes of %(domain)s.", domain=mailbox["domain"])
    if not powers.superadmin and target_roles:
        return _("Only a superadmin can act on the mailbox of an admin or helpdesk member.")
    return None


def refusal_to_remove_second_factor(actor: Actor, powers: Powers, mailbox: dict,
                                    target_roles: list[dict]) -> str | None:
    """May the actor remove someone's second factors (a lost phone)? The helpdesk's reach on ordinary mailboxes;
    a superadmin on an admin's or helpdesk member's too, but a superadmin's only at the server's command line."""
    if actor.is_command_line:
        return None
    refusal = refusal_to_help(actor, powers, mailbox, target_roles)
    if refusal:
        return refusal
    if any(role["role"] == "superadmin" for role in target_roles):
        return _("A superadmin's second factors can be removed only at the server's command line.")
    return None


def refusal_to_set_vacation(actor: Actor, powers: Powers, mailbox: dict, target_roles: list[dict]) -> str | None:
    """May the actor set someone else's out-of-office reply? The helpdesk's reach: a domain admin or helpdesk
    member within their domains, on ordinary mailboxes (a superadmin on any), never on their own."""
    return refusal_to_help(actor, powers, mailbox, target_roles)


def refusal_to_switch_recovery(actor: Actor, powers: Powers, domain: dict) -> str | None:
    """May the actor switch self-service password recovery on or off for this domain? Whoever helps with its
    mailboxes: its domain admins and helpdesk members, and superadmins."""
    if not powers.helps_with(domain["id"]):
        return _("You do not help with mailboxes of %(domain)s.", domain=domain["name"])
    return None


def refusal_to_require_app_passwords(actor: Actor, powers: Powers, domain: dict) -> str | None:
    """May the actor require app passwords of every mail client of this domain? Its admins and superadmins."""
    if not powers.administers(domain["id"]):
        return _("You do not administer %(domain)s.", domain=domain["name"])
    return None


def refusal_to_grant_send_as(actor: Actor, powers: Powers, mailbox: dict, target_roles: list[dict], address: str,
                             domains: list[str], owner: str | None) -> str | None:
    """May the actor let ``mailbox`` send as ``address``, or take that right back? ``domains``: the mailbox's
    domain and its alias domains; ``owner``: the mailbox whose own or personal address it is, if any."""
    refusal = refusal_to_manage_mailbox(actor, powers, mailbox, target_roles)
    if refusal:
        return refusal
    if address.rpartition("@")[2] not in domains:
        return _("Only addresses of %(domains)s can be granted to %(address)s.", domains=", ".join(domains),
                 address=mailbox["email"])
    if owner is not None:
        return _("%(address)s is the own address of %(owner)s; nobody else sends as it.", address=address,
                 owner=owner)
    return None


def refusal_to_hold_token(powers: Powers) -> str | None:
    """May this person hold an API token? Only someone with a role: a token does what its holder may."""
    if powers.superadmin or powers.admin_of or powers.helpdesk_of or powers.helpdesk_everywhere:
        return None
    return _("API tokens are for administrators and helpdesk staff.")


def refusal_to_manage_alias_domains(powers: Powers) -> str | None:
    """May the actor link, disable, enable or unlink alias domains? They route whole domains: superadmins only."""
    if not powers.superadmin:
        return _("Only a superadmin can link or unlink alias domains.")
    return None


def is_reserved(address: str, reserved: list[str]) -> bool:
    """Whether an alias address is one of the domain's reserved ones (postmaster@, abuse@, ...) or its catch-all."""
    local = address.partition("@")[0] if not address.startswith("@") else ""
    return address.startswith("@") or local in reserved


def refusal_to_edit_alias(actor: Actor, powers: Powers, domain: dict, source: str, rows: list[dict],
                          reserved: list[str]) -> str | None:
    """May the actor create, change or delete the admin alias ``source`` (``rows``: its rows now, maybe none)?"""
    if not powers.administers(domain["id"]):
        return _("You do not administer %(domain)s.", domain=domain["name"])
    if any(r["owner_id"] is not None for r in rows):
        return _("%(address)s is a personal address; only its owner changes it, on their forwarding page.",
                 address=source)
    if not powers.superadmin and is_reserved(source, reserved):
        if source.startswith("@"):
            return _("Only a superadmin can set the catch-all of %(domain)s: it would also receive mail for its"
                     " reserved addresses.", domain=domain["name"])
        return _("%(address)s is reserved for the administrators of %(domain)s.", address=source,
                 domain=domain["name"])
    return None
