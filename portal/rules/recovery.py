"""Self-service recovery: a recovery address proven by a link, and a new password chosen through a link sent to it.

A link's token is random, sent once and stored only as its SHA-256; it is used once
and expires (30 minutes for a new password). "Forgot password" answers alike for
every address, so it tells nobody which mailboxes exist or have a recovery address.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from .. import access
from .. import doveadm
from .. import notices
from .. import passwords
from ..access import Actor
from ..addresses import InvalidAddress
from ..addresses import canonical_address
from ..i18n import _
from ..queries import aliases as alias_queries
from ..queries import api_tokens as token_queries
from ..queries import app_passwords as app_password_queries
from ..queries import audit
from ..queries import domains as domain_queries
from ..queries import mailboxes as mailbox_queries
from ..queries import notices as notice_queries
from ..queries import recovery as queries
from ..queries import roles as role_queries
from ..queries import sessions as session_queries
from ..queries import throttle
from .helpdesk import SupportRefused

VERIFY_VALID = timedelta(hours=24)
RESET_VALID = timedelta(minutes=30)
# Links to one mailbox per hour, and "forgot password" requests per client address (or IPv6 /64) per hour.
MOST_RESETS_PER_ACCOUNT = 3
MOST_REQUESTS_PER_CLIENT = 10
RATE_WINDOW = timedelta(hours=1)
# Confirmation links a mailbox may have sent in a day: the portal mails outside addresses for nobody.
MOST_CONFIRMATIONS_PER_DAY = 3


class RecoveryRefused(ValueError):
    """The change cannot be made; the message says why."""


class TooManyRequests(Exception):
    """This client asked too often; it is told so, whatever the address it gave."""


@dataclass(frozen=True)
class Link:
    """A link to send once, and where to."""

    mailbox: dict
    recipient: str
    token: str


def token_hash(token: str) -> bytes:
    """The SHA-256 a link's token is stored and looked up by."""
    return hashlib.sha256(token.encode()).digest()


def _new_link(conn, mailbox: dict, purpose: str, address: str, valid: timedelta) -> Link:
    token = secrets.token_urlsafe(32)
    queries.new_token(conn, token_hash(token), mailbox["id"], purpose, address, valid)
    return Link(mailbox, address, token)


def recovery_of(conn, mailbox: dict) -> dict:
    """The mailbox's recovery address, whether it counts yet, whether its domain allows recovery, and whether
    the mailbox holds a role (then it never may: a mailbox outside would hold the keys to the portal)."""
    settings = notice_queries.settings_of(conn, mailbox["id"])
    domain = domain_queries.get_domain(conn, mailbox["domain_id"])
    return {"address": settings["recovery_address"], "verified_at": settings["recovery_verified_at"],
            "allowed": bool(domain["allow_password_recovery"]),
            "holds_role": bool(role_queries.roles_of(conn, mailbox["id"]))}


def reaches_mailbox(conn, address: str, mailbox: str, delimiter: str) -> bool:
    """Whether mail to ``address`` would (also) land in ``mailbox``, as Postfix expands the shipped alias map: its
    own rows, else its rows without the recipient-delimiter extension, else a mailbox, else the domain's
    catch-all, through alias domains, following every destination (a copy kept on the way included)."""
    seen = {address}
    frontier = [address]
    while frontier:
        if len(seen) > alias_queries.MAX_WALK:
            return True  # too tangled to tell: taken as the mailbox's own
        bases = {a: alias_queries.split_extension(a, delimiter) for a in frontier}
        steps = alias_queries.expand_step(conn, list(dict.fromkeys([*frontier, *(b for b, _ in bases.values())])))
        following = []
        for current in frontier:
            base, extension = bases[current]
            if mailbox in (current, base):
                return True
            step = steps[current]
            if not step["rows"] and extension:
                step = steps[base]
            if step["rows"]:
                targets = [t for t in step["rows"] if t != current]
            elif step["mailbox"]:
                continue  # delivered into another mailbox
            else:
                targets = step["catch_all"]
            for target in targets:
                if target not in seen:
                    seen.add(target)
                    following.append(target)
        frontier = following
    return False


def _outside_problem(conn, mailbox: dict, address: str, delimiter: str) -> str | None:
    if reaches_mailbox(conn, address, mailbox["email"], delimiter):
        return _("Use an address outside this mailbox: mail to %(address)s arrives here.", address=address)
    return None


def set_recovery_address(conn, actor: Actor, wanted: str, *, language: str, delimiter: str = "+") -> Link | None:
    """Set (or with an empty ``wanted``, remove) the actor's own recovery address; return the verification link to
    send once this has committed (None: removed or unchanged). The caller has checked the current password.

    The new address counts only once that link is opened. The mailbox, and the old address if it counted, are
    told of the change."""
    wanted = (wanted or "").strip()
    address = None
    if wanted:
        try:
            address = canonical_address(wanted)
        except InvalidAddress as exc:
            raise RecoveryRefused(_("The recovery address %(problem)s.", problem=str(exc))) from None
    with conn.transaction():
        mailbox = mailbox_queries.lock_mailbox(conn, actor.mailbox_id) if actor.mailbox_id else None
        if mailbox is None:
            raise RecoveryRefused(_("The mailbox no longer exists."))
        before = recovery_of(conn, mailbox)
        if address and not before["allowed"]:
            raise RecoveryRefused(_("Password recovery is switched off for %(domain)s.", domain=mailbox["domain"]))
        if address and before["holds_role"]:
            raise RecoveryRefused(_("A mailbox with an administrative or helpdesk role cannot use password recovery:"
                                    " a superadmin gives it a new password."))
        if address == before["address"] and (address is None or before["verified_at"]):
            return None
        if address:
            problem = _outside_problem(conn, mailbox, address, delimiter)
            if problem:
                raise RecoveryRefused(problem)
            if queries.recent_links(conn, mailbox["id"], "verify", timedelta(days=1)) >= MOST_CONFIRMATIONS_PER_DAY:
                raise RecoveryRefused(_("Too many confirmation links were sent today. Please try again tomorrow."))
        queries.set_address(conn, mailbox["id"], address, language)
        queries.drop_open_tokens(conn, mailbox["id"], "verify")
        queries.drop_open_tokens(conn, mailbox["id"], "reset")
        link = _new_link(conn, mailbox, "verify", address, VERIFY_VALID) if address else None
        audit.record(conn, actor=mailbox["email"], actor_role="user", client_addr=actor.client_addr,
                     action="recovery.update", target=mailbox["email"], domain=mailbox["domain"],
                     summary={"before": before["address"], "after": address, "verified": False})
        if before["address"] != address:
            old = (before["address"],) if before["verified_at"] else ()
            notices.queue(conn, mailbox, "recovery_changed", notices.recovery_changed, mailbox["email"], address,
                          notices.Change("user", actor.client_addr), also_recovery=False, extra_recipients=old)
    return link


def remove_recovery_address_of(conn, actor: Actor, mailbox: dict) -> bool:
    """The helpdesk (or an admin) removes a user's recovery address, e.g. one the user lost or an intruder set;
    return False if there was none. The user, and the removed address if it counted, are told. SupportRefused
    (asked under the row lock) where the actor may not help with this mailbox."""
    with conn.transaction():
        row, powers = access.lock_and_ask(conn, actor, mailbox, access.refusal_to_help, SupportRefused)
        before = recovery_of(conn, row)
        if before["address"] is None:
            return False
        queries.set_address(conn, row["id"], None, notice_queries.settings_of(conn, row["id"])["language"] or "en")
        queries.drop_open_tokens(conn, row["id"], "verify")
        queries.drop_open_tokens(conn, row["id"], "reset")
        who = access.audit_fields(actor, powers, row["domain_id"])
        audit.record(conn, **who, action="recovery.update", target=row["email"], domain=row["domain"],
                     summary={"before": before["address"], "after": None, "verified": False})
        notices.queue(conn, row, "recovery_changed", notices.recovery_changed, row["email"], None,
                      notices.Change.of_audit(who), also_recovery=False,
                      extra_recipients=(before["address"],) if before["verified_at"] else ())
    return True


def verify_recovery_address(conn, token: str, client_addr: str | None) -> str | None:
    """Open a verification link: its address now counts as the mailbox's recovery address; return it (None: the
    link is unknown, used, expired, or for an address that is no longer the mailbox's)."""
    with conn.transaction():
        row = queries.lock_token(conn, token_hash(token), "verify")
        if row is None:
            return None
        mailbox = mailbox_queries.lock_mailbox(conn, row["mailbox_id"])
        queries.use_token(conn, token_hash(token))
        if mailbox is None or not queries.mark_verified(conn, mailbox["id"], row["address"]):
            return None
        audit.record(conn, actor=mailbox["email"], actor_role="user", client_addr=client_addr,
                     action="recovery.verify", target=mailbox["email"], domain=mailbox["domain"],
                     summary={"address": row["address"]})
    return row["address"]


def request_reset(conn, typed_address: str, client_key: str | None, delimiter: str = "+") -> Link | None:
    """A "forgot password" request: return the link to send to the mailbox's verified recovery address, or None
    (no such mailbox, no verified address, recovery off, or too many links lately) and say nothing of which.

    Raises TooManyRequests when this client asked too often, for any address."""
    with conn.transaction():
        if queries.count_request(conn, client_key, RATE_WINDOW) > MOST_REQUESTS_PER_CLIENT:
            raise TooManyRequests
        queries.forget_old(conn)
        try:
            address = canonical_address(typed_address)
        except InvalidAddress:
            return None
        found = mailbox_queries.get_mailbox(conn, address)
        if found is None or not found["active"] or not found["domain_active"]:
            return None
        mailbox = mailbox_queries.lock_mailbox(conn, found["id"])
        recovery = recovery_of(conn, mailbox)
        if not (recovery["allowed"] and recovery["verified_at"]) or recovery["holds_role"]:
            return None
        # Asked again now: an alias or catch-all made since may bring that address's mail into this mailbox.
        if reaches_mailbox(conn, recovery["address"], mailbox["email"], delimiter):
            return None
        if queries.recent_links(conn, mailbox["id"], "reset", RATE_WINDOW) >= MOST_RESETS_PER_ACCOUNT:
            return None
        return _new_link(conn, mailbox, "reset", recovery["address"], RESET_VALID)


def _usable_reset(conn, token: str) -> tuple[dict, dict] | None:
    row = queries.lock_token(conn, token_hash(token), "reset")
    if row is None:
        return None
    mailbox = mailbox_queries.lock_mailbox(conn, row["mailbox_id"])
    if mailbox is None or not mailbox["active"] or not mailbox["domain_active"]:
        return None
    recovery = recovery_of(conn, mailbox)
    # The link counts only while it went to the address that counts now, in a domain that still allows it,
    # for a mailbox that holds no role.
    if not (recovery["allowed"] and recovery["verified_at"] and recovery["address"] == row["address"]) or (
            recovery["holds_role"]):
        return None
    return row, mailbox


def reset_link_mailbox(conn, token: str) -> dict | None:
    """The mailbox a reset link is good for now (None: unknown, used, expired or no longer valid)."""
    with conn.transaction():
        usable = _usable_reset(conn, token)
    return usable[1] if usable else None


def reset_password(conn, token: str, new_password: str, *, config, client_addr: str | None) -> dict:
    """Use a reset link: store the new password, end every session and API token, forget failed sign-ins, and tell
    the mailbox and its recovery address; return the mailbox. The password meets the policy (checked before)."""
    new_hash = passwords.hash_password(new_password, config["PASSWORD_SCHEME"])
    with conn.transaction():
        usable = _usable_reset(conn, token)
        if usable is None:
            raise RecoveryRefused(_("This link is no longer valid. Ask for a new one."))
        _row, mailbox = usable
        queries.use_token(conn, token_hash(token))
        queries.drop_open_tokens(conn, mailbox["id"], "reset")
        mailbox_queries.set_password(conn, mailbox["id"], new_hash)
        ended = session_queries.delete_user_sessions(conn, mailbox["id"])
        revoked = token_queries.revoke_all_of(conn, mailbox["id"])
        # Whoever knew the old password may have made app passwords with it: they go with it.
        app_passwords = app_password_queries.delete_all(conn, mailbox["id"])
        throttle.clear_account(conn, mailbox["email"])
        audit.record(conn, actor=mailbox["email"], actor_role="user", client_addr=client_addr,
                     action="password.recover", target=mailbox["email"], domain=mailbox["domain"],
                     summary={"scheme": config["PASSWORD_SCHEME"], "sessions_ended": ended,
                              **({"api_tokens_revoked": revoked} if revoked else {}),
                              **({"app_passwords_revoked": app_passwords} if app_passwords else {})})
        notices.queue(conn, mailbox, "password_changed", notices.password_changed, mailbox["email"],
                      notices.Change("recovery", client_addr))
    doveadm.end_mail_sessions(mailbox["email"])
    return mailbox


def remember_language(conn, actor: Actor, language: str) -> None:
    """Keep the language the user uses the portal in, for the mail it writes them."""
    if actor.mailbox_id and language in ("en", "ko"):
        # One statement, atomic by itself: no transaction round trips on every sign-in.
        notice_queries.remember_language(conn, actor.mailbox_id, language)
