"""Server-side sessions behind Flask-Login.

The cookie (signed by Flask) carries a random token that Flask-Login treats as
the user id; PostgreSQL keeps only the token's SHA-256. Deleting the row ends
the session everywhere, so logout, a password change or a helpdesk reset make a
copied cookie worthless, across every worker and every portal host.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from flask import current_app
from flask_login import LoginManager
from flask_login import UserMixin

from .db import get_db
from .i18n import _l
from .queries import sessions as session_queries

login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = _l("Please sign in to continue.")
login_manager.login_message_category = "info"

# last_seen_at is written at most this often per session.
_TOUCH_INTERVAL = timedelta(seconds=60)


class MailboxUser(UserMixin):
    """A signed-in mailbox, as seen by one session."""

    def __init__(self, row: dict, token: str):
        self.mailbox_id: int = row["id"]
        self.email: str = row["email"]
        self.domain: str = row["domain"]
        self.must_change_password: bool = row["password_must_change"]
        self.session_token = token

    def get_id(self) -> str:
        # The session token, not the mailbox id: see the module docstring.
        return self.session_token

    @property
    def roles(self) -> list[dict]:
        """The mailbox's roles, read once per request."""
        if not hasattr(self, "_roles"):
            from .queries import roles

            self._roles = roles.roles_of(get_db(), self.mailbox_id)
        return self._roles

    @property
    def must_enrol_second_factor(self) -> bool:
        """Whether this user holds a role that must sign in with a second factor and has none yet."""
        required = current_app.config["SECOND_FACTOR_REQUIRED_ROLES"]
        if not any(r["role"] in required for r in self.roles):
            return False
        if not hasattr(self, "_enrolled"):
            from .rules.second_factors import state_of

            self._enrolled = state_of(get_db(), self.mailbox_id)["enrolled"]
        return not self._enrolled

    @property
    def is_superadmin(self) -> bool:
        return any(r["role"] == "superadmin" for r in self.roles)

    @property
    def is_admin(self) -> bool:
        """Superadmin, or domain admin of at least one domain."""
        return any(r["role"] in ("superadmin", "domain_admin") for r in self.roles)

    @property
    def is_support(self) -> bool:
        """May use the helpdesk pages: helpdesk, domain admin or superadmin."""
        return bool(self.roles)

    @property
    def support_scope(self) -> list[int] | None:
        """The domain ids whose mailboxes this user may help with; None for every domain."""
        if any(r["role"] in ("superadmin", "helpdesk") and r["domain_id"] is None for r in self.roles):
            return None
        return sorted({r["domain_id"] for r in self.roles if r["role"] in ("domain_admin", "helpdesk")})


def token_hash(token: str) -> bytes:
    """Return what the database stores for a session token."""
    return hashlib.sha256(token.encode("ascii")).digest()


def start_session(conn, mailbox: dict, client_addr: str | None, *, signed_in: bool = True) -> MailboxUser:
    """Record a new session for the mailbox and return its user (inside the caller's transaction, if any).

    ``signed_in``: a sign-in, for the user's history; False for the session that replaces the old ones
    after a password change.
    """
    token = secrets.token_urlsafe(32)
    with conn.transaction():
        session_queries.create_session(conn, token_hash(token), mailbox["id"], client_addr)
        if signed_in:
            session_queries.record_sign_in(conn, mailbox["id"], client_addr)
    return MailboxUser(mailbox, token)


def end_session(conn, user: MailboxUser) -> None:
    """End one session."""
    with conn.transaction():
        session_queries.delete_session(conn, token_hash(user.session_token))


def _timeouts() -> tuple[timedelta, timedelta]:
    config = current_app.config
    return (
        timedelta(seconds=int(config["SESSION_IDLE_TIMEOUT"])),
        timedelta(seconds=int(config["SESSION_ABSOLUTE_TIMEOUT"])),
    )


@login_manager.user_loader
def load_user(token: str) -> MailboxUser | None:
    """Return the session's user while the session and its mailbox are alive."""
    if not isinstance(token, str) or len(token) > 64:
        return None
    idle, absolute = _timeouts()
    # Touched at most once a minute, but always well within the idle timeout, however short it is set.
    touch = min(_TOUCH_INTERVAL, idle / 2)
    row = session_queries.load_session_user(get_db(), token_hash(token), idle, absolute, touch)
    return MailboxUser(row, token) if row else None


def init_app(app) -> None:
    """Attach Flask-Login to the app with the portal's cookie settings."""
    login_manager.init_app(app)
    # The cookie lives as long as the longest session may; the database decides sooner.
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(seconds=int(app.config["SESSION_ABSOLUTE_TIMEOUT"]))
