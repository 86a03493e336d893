"""Sign in through Dovecot, sign out."""

from __future__ import annotations

import logging
import math
import time
from datetime import UTC
from datetime import datetime

from flask import Blueprint
from flask import abort
from flask import current_app
from flask import flash
from flask import jsonify
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from flask_babel import get_locale
from flask_login import current_user
from flask_login import login_user
from flask_login import logout_user

from .. import appearance
from .. import notices
from .. import passwords
from .. import second_factor as second_factor_mechanics
from .. import sessions
from .. import signin
from ..access import Actor
from ..access import safe_next_url
from ..access import signed_in
from ..clientaddr import client_address
from ..clientaddr import throttle_key
from ..db import get_db
from ..i18n import COOKIE
from ..i18n import LANGUAGES
from ..i18n import _
from ..i18n import _l
from ..imap import ImapUnavailable
from ..queries import mailboxes
from ..rules import recovery as recovery_rules
from ..rules import second_factors as factor_rules
from .forms import ColourModeForm
from .forms import ForgotPasswordForm
from .forms import LanguageForm
from .forms import LoginForm
from .forms import LogoutForm
from .forms import NewPasswordForm
from .forms import PasskeySignInForm
from .forms import SecondFactorForm
from .forms import VerifyRecoveryForm

bp = Blueprint("auth", __name__, url_prefix="/auth")
log = logging.getLogger(__name__)

WRONG_CREDENTIALS = _l("The address or password is incorrect.")
MAIL_SERVER_DOWN = _l(
    "The mail server is not answering, so your password cannot be checked right now. "
    "Please try again in a few minutes."
)
DISABLED = _l("This mailbox is disabled. Please contact your administrator.")


def _lock_wait(until: datetime) -> tuple[int, int]:
    """How long a lock still holds: (seconds for Retry-After, whole minutes for the message), at least one each."""
    seconds = max(1, math.ceil((until - datetime.now(UTC)).total_seconds()))
    return seconds, math.ceil(seconds / 60)


def _locked_response(form, until: datetime):
    seconds, minutes = _lock_wait(until)
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

    if factor_rules.state_of(get_db(), outcome.mailbox["id"])["enrolled"]:
        # Only the right password gets this far: the first step tells nobody else whether a second one exists.
        session.clear()
        session[PENDING_KEY] = {"address": outcome.mailbox["email"], "at": time.time(),
                                "next": safe_next_url(form.next.data) or ""}
        return redirect(url_for("auth.second_factor"))
    return _finish_sign_in(outcome.mailbox, form.next.data)


def _finish_sign_in(mailbox: dict, next_url: str | None):
    """Start the session of a mailbox that passed every step, and go on to where the user was going."""
    user = sessions.start_session(get_db(), mailbox, client_address())
    recovery_rules.remember_language(get_db(), Actor.of_user(user, client_address()), str(get_locale()))
    # A fresh cookie for the new identity (no fixation of a pre-login session).
    session.clear()
    session.permanent = True
    login_user(user)
    log.info("signed in")
    if user.must_change_password:
        flash(_("Please choose a new password before you continue."), "info")
        return redirect(url_for("account.password"))
    return redirect(safe_next_url(next_url) or url_for("account.index"))


# The second step must follow the password within this many seconds.
SECOND_STEP_SECONDS = 300
PENDING_KEY = "second_step"
PASSKEY_SIGN_IN_CHALLENGE = "passkey_sign_in"


def _pending_mailbox() -> tuple[dict | None, str]:
    """The mailbox whose password was right a moment ago in this browser (None: none, or too long ago), and
    where the user was going."""
    pending = session.get(PENDING_KEY)
    if not isinstance(pending, dict) or time.time() - float(pending.get("at", 0)) > SECOND_STEP_SECONDS:
        session.pop(PENDING_KEY, None)
        return None, ""
    mailbox = mailboxes.get_mailbox(get_db(), str(pending.get("address", "")))
    if mailbox is None or not mailbox["active"] or not mailbox["domain_active"]:
        session.pop(PENDING_KEY, None)
        return None, ""
    return mailbox, str(pending.get("next") or "")


def _second_factor_page(form, mailbox: dict, status: int = 200, headers: dict | None = None):
    state = factor_rules.state_of(get_db(), mailbox["id"])
    page = render_template("auth/second_factor.html", form=form, state=state, passkey_form=PasskeySignInForm())
    return page, status, headers or {}


def _second_step_refused(form, mailbox: dict, outcome):
    if outcome.status == "locked":
        log.warning("second step refused (locked) for %s", mailbox["email"])
        seconds, minutes = _lock_wait(outcome.locked_until)
        form.form_errors.append(_("Too many wrong codes. Please try again in %(minutes)s minutes.", minutes=minutes))
        return _second_factor_page(form, mailbox, 429, {"Retry-After": str(seconds)})
    log.warning("second step refused (invalid) for %s", mailbox["email"])
    form.form_errors.append(_("That code is not right, or was used already."))
    return _second_factor_page(form, mailbox, 200)


@bp.route("/second-factor", methods=["GET", "POST"])
def second_factor():
    """The second step of a sign-in: a TOTP code, a recovery code (once each), or a passkey."""
    mailbox, next_url = _pending_mailbox()
    if mailbox is None:
        flash(_("Please sign in again."), "info")
        return redirect(url_for("auth.login"))
    form = SecondFactorForm()
    if not form.validate_on_submit():
        return _second_factor_page(form, mailbox, 400 if form.errors else 200)
    used = []

    def check(conn) -> bool:
        used.append(factor_rules.check_code(conn, mailbox, form.code.data, client_address()))
        return used[-1] is not None

    outcome = signin.check_second_factor(mailbox, client_address(), check)
    if outcome.status != "ok":
        return _second_step_refused(form, mailbox, outcome)
    if used[-1] == "recovery_code":
        flash(_("You signed in with a recovery code, which now no longer works. %(left)s are left.",
                left=factor_rules.state_of(get_db(), mailbox["id"])["recovery_codes"]), "warning")
    return _finish_sign_in(mailbox, next_url)


@bp.post("/second-factor/passkey-options")
def passkey_sign_in_options():
    """The options for the browser to sign with one of the pending mailbox's passkeys (JSON)."""
    mailbox, _next = _pending_mailbox()
    if mailbox is None:
        return jsonify(error=_("Please sign in again.")), 400
    rp_id, _origin = _relying_party()
    options, challenge = second_factor_mechanics.authentication_options(
        rp_id, factor_rules.existing_passkeys(get_db(), mailbox["id"]))
    session[PASSKEY_SIGN_IN_CHALLENGE] = challenge.hex()
    return current_app.response_class(options, mimetype="application/json")


def _relying_party() -> tuple[str, str]:
    return second_factor_mechanics.relying_party(current_app.config["PUBLIC_URL"], request.host_url)


@bp.post("/second-factor/passkey")
def passkey_sign_in():
    """Check the browser's signature with a passkey, counted like a code; answer where to go next (JSON)."""
    mailbox, next_url = _pending_mailbox()
    challenge = session.pop(PASSKEY_SIGN_IN_CHALLENGE, None)
    form = PasskeySignInForm()
    if mailbox is None or not challenge or not form.validate_on_submit():
        return jsonify(error=_("Please sign in again.")), 400
    credential_id = second_factor_mechanics.credential_id_of(form.credential.data)
    rp_id, origin = _relying_party()

    def verify(public_key: bytes, sign_count: int) -> int:
        return second_factor_mechanics.verify_authentication(form.credential.data, bytes.fromhex(challenge), rp_id,
                                                             origin, public_key, sign_count)

    outcome = signin.check_second_factor(
        mailbox, client_address(),
        lambda conn: credential_id is not None and factor_rules.check_passkey(conn, mailbox, credential_id,
                                                                              bytes.fromhex(challenge), verify))
    if outcome.status == "locked":
        return jsonify(error=_("Too many failed attempts. Please try again later.")), 429
    if outcome.status != "ok":
        log.warning("second step refused (passkey) for %s", mailbox["email"])
        return jsonify(error=_("The passkey was not accepted.")), 400
    response = _finish_sign_in(mailbox, next_url)
    return jsonify(next=response.location)


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
    if current_user.is_authenticated:
        recovery_rules.remember_language(get_db(), Actor.of_user(current_user, client_address()), form.lang.data)
    return _remembered(COOKIE, form.lang.data, form.next.data)


def _remembered(cookie: str, value: str, next_url: str | None):
    """Back to the page the switch was on, with the choice kept in a cookie for a year."""
    response = redirect(safe_next_url(next_url) or url_for("account.index"))
    response.set_cookie(cookie, value, max_age=365 * 24 * 3600, httponly=True, samesite="Lax",
                        secure=bool(current_app.config["SESSION_COOKIE_SECURE"]))
    return response


# "Forgot password" answers no sooner than this, whatever happened: the answer and its time are the same for a
# mailbox with a recovery address, one without, and an address that does not exist. The link is sent after it.
FORGOT_ANSWER_SECONDS = 0.5
RESET_LINK_KEY = "recovery_link"


def recovery_offered() -> bool:
    """Whether this portal can send recovery links at all (it sends mail, and knows its own address)."""
    return notices.enabled() and notices.public_link("/") is not None


@bp.route("/forgot", methods=["GET", "POST"])
def forgot():
    """Ask for a link to choose a new password, sent to the mailbox's verified recovery address."""
    if not recovery_offered():
        return render_template("auth/forgot.html", form=None), 404
    form = ForgotPasswordForm()
    if not form.validate_on_submit():
        return render_template("auth/forgot.html", form=form), 400 if form.errors else 200
    started = time.monotonic()
    try:
        link = recovery_rules.request_reset(get_db(), form.address.data, throttle_key(client_address()),
                                            current_app.config["RECIPIENT_DELIMITER"])
    except recovery_rules.TooManyRequests:
        form.form_errors.append(_("Too many requests from your network. Please try again in an hour."))
        response = current_app.make_response((render_template("auth/forgot.html", form=form), 429))
        response.headers["Retry-After"] = str(int(recovery_rules.RATE_WINDOW.total_seconds()))
        return response
    response = current_app.make_response(render_template("auth/forgot_sent.html"))
    if link is not None:
        url = notices.public_link(url_for("auth.recover", token=link.token))
        notices.send_after_response(response, link.mailbox["id"], link.recipient, notices.reset_link,
                                    link.mailbox["email"], url)
        log.info("recovery link for a mailbox queued")
    time.sleep(max(0.0, FORGOT_ANSWER_SECONDS - (time.monotonic() - started)))
    return response


@bp.route("/recover", methods=["GET", "POST"])
def recover():
    """Choose a new password through a recovery link: every session ends, and the user is told by mail."""
    if request.method == "GET" and request.args.get("token"):
        # Out of the address bar (and any Referer) at once: kept in the session until used.
        session[RESET_LINK_KEY] = request.args["token"][:100]
        return redirect(url_for("auth.recover"))
    token = session.get(RESET_LINK_KEY) or ""
    mailbox = recovery_rules.reset_link_mailbox(get_db(), token) if token else None
    if mailbox is None:
        session.pop(RESET_LINK_KEY, None)
        return render_template("auth/recover.html", form=None, mailbox=None), 410
    form = NewPasswordForm()
    # A mailbox with a second factor must present it too: the recovery address alone does not sign in.
    second_step_asked = factor_rules.state_of(get_db(), mailbox["id"])["enrolled"]
    if not form.validate_on_submit():
        return render_template("auth/recover.html", form=form, mailbox=mailbox,
                               second_step=second_step_asked), 400 if form.errors else 200
    problems = passwords.configured_policy_problems(current_app.config, form.new_password.data,
                                                    address=mailbox["email"])
    if problems:
        form.new_password.errors = list(form.new_password.errors) + problems
        return render_template("auth/recover.html", form=form, mailbox=mailbox, second_step=second_step_asked), 400
    if second_step_asked:
        refused = _recovery_second_step_refused(form, mailbox)
        if refused:
            return render_template("auth/recover.html", form=form, mailbox=mailbox,
                                   second_step=second_step_asked), refused
    try:
        recovery_rules.reset_password(get_db(), token, form.new_password.data, config=current_app.config,
                                      client_addr=client_address())
    except recovery_rules.RecoveryRefused as exc:
        session.pop(RESET_LINK_KEY, None)
        form.form_errors.append(str(exc))
        return render_template("auth/recover.html", form=None, mailbox=None), 410
    session.clear()
    flash(_("Your new password is set, and every session was signed out. Sign in with it now."), "success")
    return redirect(url_for("auth.login"))


def _recovery_second_step_refused(form, mailbox: dict) -> int | None:
    """Check the code given with a new password through a recovery link, counted like a sign-in's second step;
    the status to answer with when it is wrong, missing or locked (None: right)."""
    code = (form.code.data or "").strip()
    if not code:
        form.code.errors = [*form.code.errors, _("Type a code from your authenticator app, or a recovery code.")]
        return 400
    outcome = signin.check_second_factor(
        mailbox, client_address(),
        lambda conn: factor_rules.check_code(conn, mailbox, code, client_address()) is not None)
    if outcome.status == "locked":
        form.form_errors.append(_("Too many wrong codes. Please try again later."))
        return 429
    if outcome.status != "ok":
        log.warning("recovery refused (second step) for %s", mailbox["email"])
        form.code.errors = [*form.code.errors, _("That code is not right, or was used already.")]
        return 400
    return None


@bp.route("/verify-recovery", methods=["GET", "POST"])
def verify_recovery():
    """Confirm a new recovery address from the link sent to it: by a button, so a mail scanner that opens links
    confirms nothing."""
    form = VerifyRecoveryForm()
    if request.method == "GET":
        form.token.data = (request.args.get("token") or "")[:100]
        if not form.token.data:
            return render_template("auth/verify_recovery.html", form=None, address=None), 410
        return render_template("auth/verify_recovery.html", form=form, address=None)
    if not form.validate_on_submit():
        return render_template("auth/verify_recovery.html", form=None, address=None), 410
    address = recovery_rules.verify_recovery_address(get_db(), form.token.data[:100], client_address())
    return render_template("auth/verify_recovery.html", form=None, address=address), 200 if address else 410


@bp.app_context_processor
def _recovery_offered():
    return {"recovery_offered": recovery_offered}
