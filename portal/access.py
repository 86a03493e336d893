"""Who may use which view: one decorator per rule, stated on each view."""

from __future__ import annotations

import functools
from urllib.parse import urlsplit

from flask import abort
from flask import redirect
from flask import url_for
from flask_login import current_user
from flask_login import login_required


def signed_in(view):
    """Any signed-in mailbox, including one that must change its password first."""
    return login_required(view)


def account_required(view):
    """A signed-in mailbox that has no pending forced password change."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if current_user.is_authenticated and current_user.must_change_password:
            return redirect(url_for("account.password"))
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
