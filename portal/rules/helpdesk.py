"""Helpdesk actions on one mailbox: reset its password, unlock it, disable or enable it.

Each runs in one transaction with its audit row. The mailbox row is locked first
and its roles read under that lock, so a role granted at the same moment cannot
slip past the "ordinary mailboxes only" rule (granting a role takes a key-share
lock on the same row).
"""

from __future__ import annotations

from .. import access
from .. import doveadm
from .. import notices
from .. import passwords
from ..access import Actor
from ..i18n import _
from ..queries import api_tokens as token_queries
from ..queries import app_passwords as app_password_queries
from ..queries import audit
from ..queries import mailboxes as mailbox_queries
from ..queries import recovery as recovery_queries
from ..queries import roles as role_queries
from ..queries import sessions as session_queries
from ..queries import throttle
from ..text import is_one_line
from . import addressing
from . import roles

MAX_REASON = 500


class SupportRefused(Exception):
    """The actor may not do this to this mailbox (answered with 403)."""


def _lock(conn, actor: Actor, mailbox: dict) -> tuple[dict, access.Powers]:
    """Lock the mailbox row, then ask under that lock whether the actor may help with it."""
    return access.lock_and_ask(conn, actor, mailbox, access.refusal_to_help, SupportRefused)


def refusal(conn, actor: Actor, mailbox: dict) -> str | None:
    """Why the actor may not help with this mailbox (None: may); for the pages, the actions ask again."""
    return access.refusal_to_help(actor, access.powers_of(conn, actor), mailbox,
                                  role_queries.roles_of(conn, mailbox["id"]))


def reset_password(conn, actor: Actor, mailbox: dict, *, scheme: str) -> str:
    """Give the mailbox a generated one-time password that must be changed at the next sign-in; return it.

    Ends every portal session of the mailbox. The password is returned to be shown
    once; it is never stored in clear or written to the audit log."""
    temporary = passwords.generate_password()
    password_hash = passwords.hash_password(temporary, scheme)
    with conn.transaction():
        row, powers = _lock(conn, actor, mailbox)
        mailbox_queries.set_password(conn, row["id"], password_hash, must_change=True)
        recovery_queries.drop_open_tokens(conn, row["id"], "reset")
        ended = session_queries.delete_user_sessions(conn, row["id"])
        # Whoever may have taken the account over may have made tokens and app passwords with it: they go with
        # the password.
        revoked = token_queries.revoke_all_of(conn, row["id"])
        app_passwords = app_password_queries.delete_all(conn, row["id"])
        who = access.audit_fields(actor, powers, row["domain_id"])
        notices.queue(conn, row, "password_changed", notices.password_changed, row["email"],
                      notices.Change.of_audit(who))
        audit.record(conn, **who,
                     action="mailbox.password_reset", target=row["email"], domain=row["domain"],
                     summary={"must_change": True, "sessions_ended": ended, "scheme": scheme,
                              **({"api_tokens_revoked": revoked} if revoked else {}),
                              **({"app_passwords_revoked": app_passwords} if app_passwords else {})})
    doveadm.end_mail_sessions(row["email"])
    return temporary


def unlock(conn, actor: Actor, mailbox: dict) -> dict | None:
    """Forget the failed sign-ins counted against the mailbox; return what was cleared (None: nothing was)."""
    with conn.transaction():
        row, powers = _lock(conn, actor, mailbox)
        state = throttle.state(conn, "account", row["email"])
        pairs_locked = throttle.pairs_locked(conn, row["email"])
        if (state is None or (not state["failures"] and state["locked_until"] is None)) and not pairs_locked:
            return None
        throttle.clear_account(conn, row["email"])
        state = state or {"failures": 0, "locked_until": None}
        summary = {"failures": state["failures"],
                   "locked_until": state["locked_until"].isoformat() if state["locked_until"] else None}
        audit.record(conn, **access.audit_fields(actor, powers, row["domain_id"]), action="mailbox.unlock",
                     target=row["email"], domain=row["domain"], summary=summary)
    return summary


def set_active(conn, actor: Actor, mailbox: dict, *, active: bool, reason: str, delimiter: str = "+") -> bool:
    """Enable, or disable with a reason (which also ends its sessions); return False if it was so already."""
    if not is_one_line(reason) or len(reason) > 500:
        raise SupportRefused(_("Write it on one line, without control characters."))
    with conn.transaction():
        if not active:
            roles.lock_roles(conn)  # disabling may take a superadmin's sign-in: before the row lock
        row, powers = _lock(conn, actor, mailbox)
        if row["active"] == active:
            return False
        if not active:
            try:
                roles.keep_a_superadmin(conn, row)
            except roles.RoleError as exc:
                raise SupportRefused(str(exc)) from None
        else:
            problem = addressing.enabling_problem(conn, [row["email"]], delimiter)
            if problem:
                raise SupportRefused(problem)
        mailbox_queries.set_active(conn, row["id"], active, "" if active else reason)
        summary: dict = {"reason": reason} if reason else {}
        if not active:
            summary["sessions_ended"] = session_queries.delete_user_sessions(conn, row["id"])
        audit.record(conn, **access.audit_fields(actor, powers, row["domain_id"]),
                     action="mailbox.enable" if active else "mailbox.disable", target=row["email"],
                     domain=row["domain"], summary=summary)
    if not active:
        doveadm.end_mail_sessions(row["email"])
    return True
