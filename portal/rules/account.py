"""Changes a signed-in user makes to their own mailbox's sign-in: the password."""

from __future__ import annotations

from collections.abc import Callable

from .. import doveadm
from .. import notices
from .. import passwords
from ..access import Actor
from ..i18n import _
from ..queries import app_passwords as app_password_queries
from ..queries import audit
from ..queries import mailboxes as mailbox_queries
from ..queries import recovery as recovery_queries
from ..queries import sessions as session_queries


class AccountRuleError(ValueError):
    """The change cannot be made; the message says why."""


def change_own_password(conn, actor: Actor, new_password: str, scheme: str, new_session: Callable[[dict], object]):
    """Store the owner's new password, end every session and open ``new_session`` for this browser, in one
    transaction with the audit row (no secret in it); return what ``new_session`` returned.

    The current password has been checked (by Dovecot, or for a one-time password by the portal) before. The
    new one is the owner's own: mail clients may use it at once."""
    new_hash = passwords.hash_password(new_password, scheme)
    with conn.transaction():
        mailbox = mailbox_queries.lock_mailbox(conn, actor.mailbox_id) if actor.mailbox_id else None
        if mailbox is None:
            raise AccountRuleError(_("The mailbox no longer exists."))
        mailbox_queries.set_password(conn, mailbox["id"], new_hash)
        recovery_queries.drop_open_tokens(conn, mailbox["id"], "reset")
        ended = session_queries.delete_user_sessions(conn, mailbox["id"])
        # App passwords made with the old password go with it (as Google's do): whoever else knew it may have
        # made one that would outlive the change.
        app_passwords = app_password_queries.delete_all(conn, mailbox["id"])
        audit.record(conn, actor=mailbox["email"], actor_role="user", client_addr=actor.client_addr,
                     action="password.change", target=mailbox["email"], domain=mailbox["domain"],
                     summary={"scheme": scheme, "sessions_ended": ended, "was_forced": mailbox["password_must_change"],
                              **({"app_passwords_revoked": app_passwords} if app_passwords else {})})
        notices.queue(conn, mailbox, "password_changed", notices.password_changed, mailbox["email"],
                      notices.Change("user", actor.client_addr))
        started = new_session({**mailbox, "password_must_change": False})
    # Committed: mail clients still connected with the old password sign in again with the new one.
    doveadm.end_mail_sessions(mailbox["email"])
    return started
