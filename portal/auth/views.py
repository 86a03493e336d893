"""Sign in through Dovecot, sign out."""

from __future__ import annotations

import logging
import math
from datetime import UTC
from datetime import datetime

from flask import Blueprint
from flask import abort
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from flask_login import current_user
from flask_login import login_user
from flask_login import logout_user

from .. import appearance
from .. import sessions
from .. import signin
from ..access import safe_next_url
from ..access import signed_in
from ..clientaddr import client_address
from ..db import get_db
from ..i18n import COOKIE
from ..i18n import LANGUAGES
from ..i18n import _
from ..i18n import _l
from ..imap import ImapUnavailable
from .forms import ColourModeForm
from .forms import LanguageForm
from .forms import LoginForm
from .forms import LogoutForm

bp = Blueprint("auth", __name__, url_prefix="/auth")
log = logging.getLogger(__name__)

WRONG_CREDENTIALS = _l("The address or password is incorrect.")
MAIL_SERVER_DOWN = _l(
    "The mail server is not answering, so your password cannot be checked right now. "
    "Please try again in a few minutes."
)
DISABLED = _l("This mailbox is disabled. Please contact your administrator.")


def _locked_response(form, until: datetime):
    seconds = max(1, math.ceil((until - datetime.now(UTC)).total_seconds()))
    minutes = math.ceil(seconds / 60)
    after = until.astimezone(UTC).strftime("%H:%M")
    if minutes == 1:
        message = _("Too many failed sign-in attempts. Please try again in %(minutes)s minute (after %(time)s UTC).",
                    minutes=minutes, time=after)
    else:
        message = _("Too many failed sign-in attempts. Please try again in %(minutes)s minutes (after %(time)s UTC).",
                    minutes=minutes, time=after)
    form.form_errors.append(message)
    response = current_app.make_response((render_template("auth/login.html", form=form), 429))
    response.headers["Retry-After"] = str(seconds)
    return response


def busy_response(template: str, form, message: str, status: int):
    """Answer a sign-in that was not checked because too many wait on Dovecot: try again shortly."""
    form.form_errors.append(message)
    response = current_app.make_response((render_template(template, form=form), status))
    response.headers["Retry-After"] = str(signin.BUSY_RETRY_AFTER)
    return response


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the sign-in form and check the password with Dovecot."""
    if current_user.is_authenticated:
        return redirect(url_for("account.index"))
    form = LoginForm()
    if request.method == "GET":
        form.next.data = safe_next_url(request.args.get("next")) or ""
    if not form.validate_on_submit():
        return render_template("auth/login.html", form=form), 400 if form.errors else 200

    try:
        outcome = signin.check_password(form.canonical_address, form.password.data, client_address())
    except ImapUnavailable as exc:
        log.error("sign-in for a user could not be checked: %s", exc)
        form.form_errors.append(MAIL_SERVER_DOWN)
        return render_template("auth/login.html", form=form), 503

    if outcome.status != "ok":
        # One line per refused sign-in, with the client address (on every line): what fail2ban reads.
        log.warning("sign-in refused (%s) for %s", outcome.status, form.canonical_address)
    if outcome.status == "locked":
        return _locked_response(form, outcome.locked_until)
    busy = signin.busy_refusal(outcome)
    if busy:
        return busy_response("auth/login.html", form, *busy)
    if outcome.status == "invalid":
        form.form_errors.append(WRONG_CREDENTIALS)
        return render_template("auth/login.html", form=form), 200
    if outcome.status == "disabled":
        form.form_errors.append(DISABLED)
        return render_template("auth/login.html", form=form), 403

    user = sessions.start_session(get_db(), outcome.mailbox, client_address())
    # A fresh cookie for the new identity (no fixation of a pre-login session).
    session.clear()
    session.permanent = True
    login_user(user)
    log.info("signed in")
    if user.must_change_password:
        flash(_("Please choose a new password before you continue."), "info")
        return redirect(url_for("account.password"))
    return redirect(safe_next_url(form.next.data) or url_for("account.index"))


@bp.post("/logout")
@signed_in
def logout():
    """End the session here and in the database."""
    form = LogoutForm()
    if form.validate_on_submit():
        sessions.end_session(get_db(), current_user)
        logout_user()
        session.clear()
        flash(_("You have signed out."), "info")
    return redirect(url_for("auth.login"))


@bp.post("/colour-mode")
def set_colour_mode():
    """Remember the chosen colour mode in a cookie (a year) and go back to the page."""
    form = ColourModeForm()
    if not form.validate_on_submit() or form.mode.data not in appearance.MODES:
        abort(400)
    return _remembered(appearance.COOKIE, form.mode.data, form.next.data)


@bp.post("/language")
def set_language():
    """Remember the chosen language in a cookie (a year) and go back to the page."""
    form = LanguageForm()
    if not form.validate_on_submit() or form.lang.data not in LANGUAGES:
        abort(400)
    return _remembered(COOKIE, form.lang.data, form.next.data)


def _remembered(cookie: str, value: str, next_url: str | None):
    """Back to the page the switch was on, with the choice kept in a cookie for a year."""
    response = redirect(safe_next_url(next_url) or url_for("account.index"))
    response.set_cookie(cookie, value, max_age=365 * 24 * 3600, httponly=True, samesite="Lax",
                        secure=bool(current_app.config["SESSION_COOKIE_SECURE"]))
    return response
