"""Creating and changing domains: one set of rules for the admin pages, the command line and CSV import."""

from __future__ import annotations

from .. import access
from .. import doveadm
from .. import quota
from ..access import Actor
from ..addresses import InvalidAddress
from ..addresses import canonical_domain
from ..i18n import _
from ..queries import aliases as alias_queries
from ..queries import audit
from ..queries import domains as domain_queries
from ..queries import sessions as session_queries

DEFAULT_SETTINGS = {
    "active": True, "max_mailboxes": 0, "max_aliases": 0, "default_quota_bytes": 0, "max_quota_bytes": 0,
    "allow_personal_aliases": True, "max_personal_aliases": 5,
}


class DomainRuleError(ValueError):
    """A domain change that cannot be done; the message says why."""


class InvalidDomainInput(DomainRuleError):
    """A name or setting that is not valid in itself, whatever the database holds (the API answers 400)."""


class DomainExists(DomainRuleError):
    """The domain to create is there already."""


class DomainConflict(DomainRuleError):
    """Someone else changed the domain's settings since the form was shown."""


def version_of(domain: dict) -> str:
    """What the settings form carries to notice a change made meanwhile: a digest of the settings.

    (Not the row's update time: the mailbox and alias counters change that all day.)"""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(current_settings(domain), sort_keys=True).encode()).hexdigest()[:16]


def domain_name(text: str) -> str:
    """Return the canonical (lower-case, ASCII) form of a domain name; DomainRuleError if it is not one."""
    try:
        return canonical_domain(text or "")
    except InvalidAddress as exc:
        raise InvalidDomainInput(_("This domain name %(problem)s.", problem=str(exc))) from None


def settings_from(default_quota: str = "", max_quota: str = "", **values) -> dict:
    """Settings from typed values (sizes as text such as "2 GB"); DomainRuleError for a bad one."""
    try:
        default_bytes = quota.parse_size(default_quota or "")
        max_bytes = quota.parse_size(max_quota or "")
    except quota.InvalidSize as exc:
        raise InvalidDomainInput(str(exc)) from None
    if max_bytes and default_bytes > max_bytes:
        raise InvalidDomainInput(_("The default size limit cannot be above the largest one."))
    settings = {**DEFAULT_SETTINGS, "default_quota_bytes": default_bytes, "max_quota_bytes": max_bytes}
    for key, value in values.items():
        if key not in DEFAULT_SETTINGS:
            raise TypeError(f"unknown domain setting {key}")
        if value is not None:
            settings[key] = value
    for key in ("max_mailboxes", "max_aliases", "max_personal_aliases"):
        if not isinstance(settings[key], int) or settings[key] < 0:
            raise InvalidDomainInput(_("%(setting)s must be a whole number from 0 up.", setting=key.replace("_", " ")))
    return settings


class DomainRefused(DomainRuleError):
    """Only a superadmin creates domains and changes their settings (answered with 403)."""


def _superadmin_powers(conn, actor: Actor) -> access.Powers:
    powers = access.powers_of(conn, actor)
    if not powers.superadmin:
        raise DomainRefused(_("Only a superadmin can create domains or change their settings."))
    return powers


def create_domain(conn, actor: Actor, *, name: str, settings: dict) -> str:
    """Create a domain with its audit row; return its canonical name. DomainRuleError if it exists."""
    name = domain_name(name)
    with conn.transaction():
        powers = _superadmin_powers(conn, actor)
        if domain_queries.create_domain(conn, name, settings) is None:
            raise DomainExists(_("%(domain)s already exists.", domain=name))
        audit.record(conn, **access.audit_fields(actor, powers), action="domain.create",
                     target=name, domain=name, summary=settings)
    return name


def update_domain(conn, actor: Actor, *, domain: dict, settings: dict, expected_version: str | None = None,
                  delimiter: str = "+") -> None:
    """Store a domain's settings and limits with its audit row (DomainConflict if they changed meanwhile)."""
    from . import roles

    with conn.transaction():
        powers = _superadmin_powers(conn, actor)
        current = domain_queries.lock_domain(conn, domain["id"])
        if current is None:
            raise DomainRuleError(_("%(domain)s no longer exists.", domain=domain["name"]))
        if expected_version:
            if version_of(current) != expected_version:
                raise DomainConflict(_("Someone else changed the settings of %(domain)s after you opened this page."
                                       " They are shown as they are now: make your change again if it is still"
                                       " needed.", domain=domain["name"]))
        if not settings["active"]:
            try:
                roles.keep_a_superadmin_outside(conn, domain)
            except roles.RoleError as exc:
                raise DomainRuleError(str(exc)) from None
        if settings["active"] and not current["active"]:
            from . import addressing

            problem = addressing.enabling_problem(conn, alias_queries.forwarding_mailboxes(conn, current["id"]),
                                                  delimiter)
            if problem:
                raise DomainRuleError(problem)
        elif not settings["active"] and current["active"]:
            # Its users' portal sessions end with it, as a disabled mailbox's do.
            session_queries.delete_domain_sessions(conn, current["id"])
        domain_queries.update_domain(conn, domain["id"], settings)
        audit.record(conn, **access.audit_fields(actor, powers, domain["id"]), action="domain.update",
                     target=domain["name"], domain=domain["name"], summary=settings)
    if not settings["active"] and current["active"]:
        doveadm.end_mail_sessions(f"*@{current['name']}")


def current_settings(domain: dict) -> dict:
    """The settings part of a full domain row (queries.domains.get_domain)."""
    return {key: domain[key] for key in DEFAULT_SETTINGS}


class AppPasswordSwitchRefused(Exception):
    """The actor may not decide whether the domain's mail clients must use app passwords (answered with 403)."""


class RecoverySwitchRefused(DomainRuleError):
    """The actor may not switch recovery for this domain (answered with 403)."""


def require_app_passwords(conn, actor: Actor, domain_id: int, required: bool) -> bool:
    """Whether every mailbox of the domain must use app passwords in mail clients (Dovecot then refuses them the
    main password); return False if it was so already. A domain's admins and superadmins decide."""
    from ..queries import second_factors as factor_queries

    with conn.transaction():
        domain = domain_queries.lock_domain(conn, domain_id)
        if domain is None:
            raise DomainRuleError(_("The domain no longer exists."))
        powers = access.powers_of(conn, actor)
        refusal = access.refusal_to_require_app_passwords(actor, powers, domain)
        if refusal:
            raise AppPasswordSwitchRefused(refusal)
        if not factor_queries.set_domain_requires_app_passwords(conn, domain["id"], required):
            return False
        audit.record(conn, **access.audit_fields(actor, powers, domain["id"]), action="domain.app_passwords",
                     target=domain["name"], domain=domain["name"], summary={"required": required})
    return True


def set_password_recovery(conn, actor: Actor, domain_id: int, allowed: bool) -> bool:
    """Switch self-service password recovery on or off for a domain; return False if it was so already.

    Switched off, "forgot password" sends no link for its mailboxes and open links stop working."""
    with conn.transaction():
        domain = domain_queries.lock_domain(conn, domain_id)
        if domain is None:
            raise RecoverySwitchRefused(_("The domain no longer exists."))
        powers = access.powers_of(conn, actor)
        refusal = access.refusal_to_switch_recovery(actor, powers, domain)
        if refusal:
            raise RecoverySwitchRefused(refusal)
        if domain["allow_password_recovery"] == allowed:
            return False
        domain_queries.set_password_recovery(conn, domain["id"], allowed)
        audit.record(conn, **access.audit_fields(actor, powers, domain["id"]), action="domain.recovery",
                     target=domain["name"], domain=domain["name"], summary={"allowed": allowed})
    return True
