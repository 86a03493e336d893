"""Dashboard and password change of the signed-in mailbox."""

from __future__ import annotations

import logging

from flask import Blueprint
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from flask_login import current_user
from flask_login import login_user

from .. import passwords
from .. import sessions
from .. import signin
from ..access import account_required
from ..access import signed_in
from ..auth.views import MAIL_SERVER_DOWN
from ..db import get_db
from ..imap import ImapUnavailable
from ..queries import audit
from ..queries import mailboxes
from ..queries import sessions as session_queries
from .forms import PasswordChangeForm

bp = Blueprint("account", __name__)
log = logging.getLogger(__name__)


@bp.get("/")
@account_required
def index():
    """The signed-in user's start page."""
    mailbox = mailboxes.get_mailbox(get_db(), current_user.email)
    return render_template("account/index.html", mailbox=mailbox)


def _policy_problems(form, config) -> list[str]:
    return passwords.policy_problems(
        form.new_password.data,
        address=current_user.email,
        current=form.current_password.data,
        min_length=int(config["PASSWORD_MIN_LENGTH"]),
        max_length=int(config["PASSWORD_MAX_LENGTH"]),
        min_score=int(config["PASSWORD_MIN_SCORE"]),
    )


@bp.route("/account/password", methods=["GET", "POST"])
@signed_in
def password():
    """Change the password: checked by Dovecot, then every session is replaced."""
    config = current_app.config
    form = PasswordChangeForm()
    if not form.validate_on_submit():
        return render_template("account/password.html", form=form), 400 if form.errors else 200
    problems = _policy_problems(form, config)
    if problems:
        form.new_password.errors = list(form.new_password.errors) + problems
        return render_template("account/password.html", form=form), 400

    conn = get_db()
    try:
        outcome = signin.check_password(
            conn, config, current_user.email, form.current_password.data, request.remote_addr
        )
    except ImapUnavailable as exc:
        log.error("password change could not check the current password: %s", exc)
        form.form_errors.append(MAIL_SERVER_DOWN)
        return render_template("account/password.html", form=form), 503
    if outcome.status == "locked":
        form.form_errors.append("Too many wrong passwords. Please wait a few minutes and try again.")
        return render_template("account/password.html", form=form), 429
    if outcome.status != "ok":
        form.current_password.errors = list(form.current_password.errors) + ["The current password is not correct."]
        return render_template("account/password.html", form=form), 400

    scheme = config["PASSWORD_SCHEME"]
    new_hash = passwords.hash_password(form.new_password.data, scheme)
    mailbox = outcome.mailbox
    with conn.transaction():
        mailboxes.set_password(conn, mailbox["id"], new_hash)
        ended = session_queries.delete_user_sessions(conn, mailbox["id"])
        audit.record(
            conn,
            actor=current_user.email,
            actor_role="user",
            client_addr=request.remote_addr,
            action="password.change",
            target=mailbox["email"],
            domain=mailbox["domain"],
            summary={"scheme": scheme, "sessions_ended": ended, "was_forced": mailbox["password_must_change"]},
        )
        user = sessions.start_session(conn, {**mailbox, "password_must_change": False}, request.remote_addr)
    session.clear()
    session.permanent = True
    login_user(user)
    flash("Your password has been changed. Any other sessions have been signed out.", "success")
    return redirect(url_for("account.index"))
