"""Helpdesk actions on one mailbox: reset its password, unlock it, disable or enable it.

Each runs in one transaction with its audit row. The mailbox row is locked first
and its roles read under that lock, so a role granted at the same moment cannot
slip past the "ordinary mailboxes only" rule (granting a role takes a key-share
lock on the same row).
"""

from __future__ import annotations

from . import passwords
from . import roles
from .i18n import _
from .queries import audit
from .queries import roles as role_queries
from .queries import sessions as session_queries
from .queries import throttle

MAX_REASON = 500


class SupportRefused(Exception):
    """The actor may not do this to this mailbox (answered with 403)."""


def _lock(conn, mailbox: dict, actor_is_superadmin: bool, actor_email: str) -> dict:
    row = conn.execute(
        """
        SELECT u.id, u.email, u.active, u.disabled_reason, u.domain_id, d.name AS domain
          FROM virtual_users u JOIN virtual_domains d ON d.id = u.domain_id
         WHERE u.id = %s FOR UPDATE OF u
        """,
        (mailbox["id"],),
    ).fetchone()
    if row is None:
        raise SupportRefused(_("The mailbox no longer exists."))
    check_target(conn, row, actor_is_superadmin, actor_email)
    return row


def check_target(conn, mailbox: dict, actor_is_superadmin: bool, actor_email: str) -> None:
    """Refuse the actor's own mailbox, and, unless the actor is a superadmin, any mailbox that holds a role."""
    if mailbox["email"] == actor_email:
        raise SupportRefused(_("Use your own account pages for your own mailbox."))
    if not actor_is_superadmin and role_queries.roles_of(conn, mailbox["id"]):
        raise SupportRefused(_("Only a superadmin can act on the mailbox of an admin or helpdesk member."))


def reset_password(conn, mailbox: dict, *, scheme: str, actor: str, actor_role: str, actor_is_superadmin: bool,
                   client_addr: str | None) -> str:
    """Give the mailbox a generated one-time password that must be changed at the next sign-in; return it.

    Ends every portal session of the mailbox. The password is returned to be shown
    once; it is never stored in clear or written to the audit log."""
    temporary = passwords.generate_password()
    password_hash = passwords.hash_password(temporary, scheme)
    with conn.transaction():
        row = _lock(conn, mailbox, actor_is_superadmin, actor)
        conn.execute(
            "UPDATE virtual_users SET password = %s, password_changed_at = now(), password_must_change = true"
            " WHERE id = %s",
            (password_hash, row["id"]),
        )
        ended = session_queries.delete_user_sessions(conn, row["id"])
        audit.record(conn, actor=actor, actor_role=actor_role, client_addr=client_addr,
                     action="mailbox.password_reset", target=row["email"], domain=row["domain"],
                     summary={"must_change": True, "sessions_ended": ended, "scheme": scheme})
    return temporary


def unlock(conn, mailbox: dict, *, actor: str, actor_role: str, actor_is_superadmin: bool,
           client_addr: str | None) -> dict | None:
    """Forget the failed sign-ins counted against the mailbox; return what was cleared (None: nothing was)."""
    with conn.transaction():
        row = _lock(conn, mailbox, actor_is_superadmin, actor)
        state = throttle.state(conn, "account", row["email"])
        if state is None or (not state["failures"] and state["locked_until"] is None):
            return None
        throttle.clear(conn, "account", row["email"])
        summary = {"failures": state["failures"],
                   "locked_until": state["locked_until"].isoformat() if state["locked_until"] else None}
        audit.record(conn, actor=actor, actor_role=actor_role, client_addr=client_addr, action="mailbox.unlock",
                     target=row["email"], domain=row["domain"], summary=summary)
    return summary


def set_active(conn, mailbox: dict, *, active: bool, reason: str, actor: str, actor_role: str,
               actor_is_superadmin: bool, client_addr: str | None) -> bool:
    """Enable, or disable with a reason (which also ends its sessions); return False if it was so already."""
    with conn.transaction():
        row = _lock(conn, mailbox, actor_is_superadmin, actor)
        if row["active"] == active:
            return False
        if not active:
            try:
                roles.keep_a_superadmin(conn, row)
            except roles.RoleError as exc:
                raise SupportRefused(str(exc)) from None
        conn.execute(
            "UPDATE virtual_users SET active = %s, disabled_reason = %s WHERE id = %s",
            (active, "" if active else reason, row["id"]),
        )
        summary: dict = {"reason": reason} if reason else {}
        if not active:
            summary["sessions_ended"] = session_queries.delete_user_sessions(conn, row["id"])
        audit.record(conn, actor=actor, actor_role=actor_role, client_addr=client_addr,
                     action="mailbox.enable" if active else "mailbox.disable", target=row["email"],
                     domain=row["domain"], summary=summary)
    return True
