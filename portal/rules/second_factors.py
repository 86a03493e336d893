"""Second factors for the portal sign-in: a TOTP app, passkeys, recovery codes; and the mail-client setting.

A user enrols and removes their own; the helpdesk, a domain admin or a superadmin
may remove an ordinary user's (a lost phone), never an admin's (see
``access.refusal_to_remove_second_factor``). The first second factor also keeps
the mailbox's mail clients off its main password (app passwords only), or a
stolen password would still read the mail over IMAP.
"""

from __future__ import annotations

import hashlib

from .. import access
from .. import doveadm
from .. import notices
from .. import second_factor
from ..access import Actor
from ..i18n import _
from ..queries import audit
from ..queries import mailboxes as mailbox_queries
from ..queries import second_factors as factor_queries
from ..queries import sessions as session_queries
from ..text import is_one_line

MAX_PASSKEYS = 10
MAX_NAME = 60
ROLES = ("superadmin", "domain_admin", "helpdesk")


class SecondFactorRefused(ValueError):
    """The change cannot be made; the message says why, in the UI's language."""


def state_of(conn, mailbox_id: int) -> dict:
    """The mailbox's second factors and mail-client setting, with ``enrolled``: whether it has any factor."""
    state = factor_queries.state(conn, mailbox_id)
    return {**state, "enrolled": state["totp"] or state["passkeys"] > 0}


def _own_mailbox(conn, actor: Actor) -> dict:
    if actor.is_command_line or actor.token is not None:
        raise SecondFactorRefused(_("Second factors are managed on the portal's pages, by the mailbox's owner."))
    row = mailbox_queries.lock_mailbox(conn, actor.mailbox_id)
    if row is None or not row["active"]:
        raise SecondFactorRefused(_("This mailbox is disabled."))
    return row


def _audit(conn, actor: Actor, row: dict, action: str, summary: dict) -> None:
    powers = access.powers_of(conn, actor)
    audit.record(conn, **access.audit_fields(actor, powers, row["domain_id"]), action=action, target=row["email"],
                 domain=row["domain"], summary=summary)


def _first_factor_added(conn, actor: Actor, row: dict, was_enrolled: bool) -> tuple[list[str] | None, dict]:
    """What enrolling a factor brings when it is the mailbox's first: recovery codes (returned, to be shown once),
    mail clients kept to app passwords, the user's other portal sessions ended, and the dashboard's note of a
    removal forgotten; return (the codes, what goes into the audit summary).

    Ending the other sessions is the point of enrolling after a suspected theft: a session opened with the stolen
    password would otherwise outlive the new factor."""
    if was_enrolled:
        return None, {}
    codes = second_factor.new_recovery_codes()
    factor_queries.replace_recovery_codes(conn, row["id"], [second_factor.recovery_code_hash(row["id"], code)
                                                            for code in codes])
    factor_queries.set_mail_clients_use_app_passwords(conn, row["id"], True)
    factor_queries.mark_removed_by_other(conn, row["id"], None)
    ended = session_queries.delete_other_sessions(conn, row["id"], actor.session_token_hash)
    return codes, {"first": True, "sessions_ended": ended}


def _after_first_factor(row: dict, codes: list[str] | None) -> None:
    # Committed: mail clients connected with the main password sign in again, now with an app password.
    if codes is not None:
        doveadm.end_mail_sessions(row["email"])


def start_totp(conn, actor: Actor) -> str:
    """Begin enrolling a TOTP app for the actor's own mailbox; return the new secret (for the QR code)."""
    secret = second_factor.new_totp_secret()
    with conn.transaction():
        row = _own_mailbox(conn, actor)
        existing = factor_queries.totp_of(conn, row["id"], lock=True)
        if existing is not None and existing["confirmed_at"] is not None:
            raise SecondFactorRefused(_("An authenticator app is set up already; remove it first to set up another."))
        factor_queries.start_totp(conn, row["id"], secret)
    return secret


def confirm_totp(conn, actor: Actor, code: str) -> list[str] | None:
    """Finish enrolling the TOTP app with a code from it; return new recovery codes if it is the first factor."""
    with conn.transaction():
        row = _own_mailbox(conn, actor)
        pending = factor_queries.totp_of(conn, row["id"], lock=True)
        if pending is None or pending["confirmed_at"] is not None:
            raise SecondFactorRefused(_("Start again: scan the new QR code first."))
        step = second_factor.totp_step(pending["secret"], code or "", 0)
        if step is None:
            raise SecondFactorRefused(_("That code is not right. Check the app's clock and type the code it shows"
                                        " now."))
        was_enrolled = state_of(conn, row["id"])["enrolled"]
        factor_queries.confirm_totp(conn, row["id"], step)
        codes, first = _first_factor_added(conn, actor, row, was_enrolled)
        _audit(conn, actor, row, "second_factor.add", {"kind": "totp", **first})
        notices.queue(conn, row, "second_factor_changed", notices.second_factor_changed, row["email"], "added",
                      notices.Change("user", actor.client_addr))
    _after_first_factor(row, codes)
    return codes


def remove_totp(conn, actor: Actor) -> None:
    """Remove the actor's own TOTP app (the recovery codes go with the last factor)."""
    with conn.transaction():
        row = _own_mailbox(conn, actor)
        if not factor_queries.delete_totp(conn, row["id"]):
            raise SecondFactorRefused(_("No authenticator app is set up."))
        _after_own_removal(conn, actor, row, {"kind": "totp"})


def _after_own_removal(conn, actor: Actor, row: dict, summary: dict) -> None:
    if not state_of(conn, row["id"])["enrolled"]:
        factor_queries.delete_recovery_codes(conn, row["id"])
    _audit(conn, actor, row, "second_factor.remove", summary)
    notices.queue(conn, row, "second_factor_changed", notices.second_factor_changed, row["email"], "removed",
                  notices.Change("user", actor.client_addr))


def renew_recovery_codes(conn, actor: Actor) -> list[str]:
    """Replace the actor's recovery codes with ten new ones; return them, to be shown once."""
    with conn.transaction():
        row = _own_mailbox(conn, actor)
        if not state_of(conn, row["id"])["enrolled"]:
            raise SecondFactorRefused(_("Set up an authenticator app or a passkey first."))
        codes = second_factor.new_recovery_codes()
        factor_queries.replace_recovery_codes(conn, row["id"], [second_factor.recovery_code_hash(row["id"], code)
                                                                for code in codes])
        _audit(conn, actor, row, "second_factor.recovery_codes", {"count": len(codes)})
    return codes


def existing_passkeys(conn, mailbox_id: int) -> list[bytes]:
    """The credential ids of the mailbox's passkeys (so the browser does not make a second one on a key)."""
    return [bytes(row["credential_id"]) for row in factor_queries.passkeys_of(conn, mailbox_id)]


def add_passkey(conn, actor: Actor, *, name: str, credential_id: bytes, public_key: bytes,
                sign_count: int) -> list[str] | None:
    """Keep a passkey the browser made and the portal checked; return new recovery codes if it is the first
    factor."""
    name = " ".join((name or "").split()) or _("Passkey")
    if len(name) > MAX_NAME or not is_one_line(name):
        raise SecondFactorRefused(_("Give the passkey a name of at most %(n)s characters.", n=MAX_NAME))
    with conn.transaction():
        row = _own_mailbox(conn, actor)
        if len(factor_queries.passkeys_of(conn, row["id"])) >= MAX_PASSKEYS:
            raise SecondFactorRefused(_("A mailbox may have %(n)s passkeys; remove one first.", n=MAX_PASSKEYS))
        if factor_queries.credential_taken(conn, credential_id):
            raise SecondFactorRefused(_("This passkey is registered already."))
        was_enrolled = state_of(conn, row["id"])["enrolled"]
        passkey_id = factor_queries.add_passkey(conn, row["id"], credential_id, public_key, sign_count, name)
        codes, first = _first_factor_added(conn, actor, row, was_enrolled)
        _audit(conn, actor, row, "second_factor.add", {"kind": "passkey", "passkey": passkey_id, "name": name,
                                                       **first})
        notices.queue(conn, row, "second_factor_changed", notices.second_factor_changed, row["email"], "added",
                      notices.Change("user", actor.client_addr))
    _after_first_factor(row, codes)
    return codes


def remove_passkey(conn, actor: Actor, passkey_id: int) -> str:
    """Remove one of the actor's own passkeys; return its name."""
    with conn.transaction():
        row = _own_mailbox(conn, actor)
        gone = factor_queries.delete_passkey(conn, row["id"], passkey_id)
        if gone is None:
            raise SecondFactorRefused(_("There is no such passkey."))
        _after_own_removal(conn, actor, row, {"kind": "passkey", "passkey": gone["id"], "name": gone["name"]})
    return gone["name"]


def set_mail_clients_use_app_passwords(conn, actor: Actor, on: bool) -> None:
    """Whether the actor's own mail clients must use app passwords (Dovecot then refuses them the main password)."""
    with conn.transaction():
        row = _own_mailbox(conn, actor)
        factor_queries.set_mail_clients_use_app_passwords(conn, row["id"], bool(on))
        _audit(conn, actor, row, "mailbox.mail_clients", {"app_passwords_only": bool(on)})


def remove_second_factors_of(conn, actor: Actor, mailbox: dict) -> bool:
    """Remove every second factor and recovery code of someone else's mailbox (a lost phone); the user is told on
    their dashboard and by mail. False if it had none."""
    with conn.transaction():
        row, powers = access.lock_and_ask(conn, actor, mailbox, access.refusal_to_remove_second_factor,
                                          SecondFactorRefused)
        totp = factor_queries.delete_totp(conn, row["id"])
        passkeys = factor_queries.delete_passkeys(conn, row["id"])
        codes = factor_queries.delete_recovery_codes(conn, row["id"])
        if not (totp or passkeys or codes):
            return False
        who = access.audit_fields(actor, powers, row["domain_id"])
        factor_queries.mark_removed_by_other(conn, row["id"], who["actor_role"])
        audit.record(conn, **who, action="second_factor.remove_all", target=row["email"], domain=row["domain"],
                     summary={"totp": bool(totp), "passkeys": passkeys, "recovery_codes": codes})
        notices.queue(conn, row, "second_factor_changed", notices.second_factor_changed, row["email"],
                      "removed_by_other", notices.Change.of_audit(who))
    return True


# --- at sign-in: no actor yet, the password step has named the mailbox ------------------------------------------


def check_code(conn, mailbox: dict, code: str, client_addr: str | None) -> str | None:
    """Whether ``code`` is a current TOTP code not used before, or an unused recovery code (used up by this);
    return "totp" or "recovery_code", else None."""
    if second_factor.looks_like_recovery_code(code):
        with conn.transaction():
            digest = second_factor.recovery_code_hash(mailbox["id"], code)
            if not factor_queries.use_recovery_code(conn, mailbox["id"], digest):
                return None
            left = factor_queries.state(conn, mailbox["id"])["recovery_codes"]
            audit.record(conn, actor=mailbox["email"], actor_role="user", client_addr=client_addr, token_id=None,
                         action="second_factor.recovery_code_used", target=mailbox["email"],
                         domain=mailbox["domain"], summary={"left": left})
        return "recovery_code"
    totp = factor_queries.totp_of(conn, mailbox["id"])
    if totp is None or totp["confirmed_at"] is None:
        return None
    step = second_factor.totp_step(totp["secret"], code, totp["last_step"])
    # The step is taken by one conditional UPDATE: of two requests with the same code, one wins.
    if step is None or not factor_queries.use_totp_step(conn, mailbox["id"], step):
        return None
    return "totp"


def check_passkey(conn, mailbox: dict, credential_id: bytes, challenge: bytes, verify) -> bool:
    """Whether the mailbox's passkey ``credential_id`` signed ``challenge``, answered once only:
    ``verify(public_key, sign_count)`` returns the new sign count or raises ValueError."""
    with conn.transaction():
        passkey = factor_queries.passkey_by_credential(conn, mailbox["id"], credential_id)
        if passkey is None:
            return False
        # The challenge rides in the signed session cookie, which a copy could send again: once only.
        if not factor_queries.use_challenge(conn, hashlib.sha256(challenge).digest()):
            return False
        try:
            new_count = verify(bytes(passkey["public_key"]), passkey["sign_count"])
        except ValueError:
            return False
        factor_queries.use_passkey(conn, passkey["id"], new_count)
    return True
