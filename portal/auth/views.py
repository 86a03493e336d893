"""Sign-in page. Verification through Dovecot arrives with the sign-in feature."""

from __future__ import annotations

from flask import Blueprint
from flask import render_template

from .forms import LoginForm

bp = Blueprint("auth", __name__, url_prefix="/auth")


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the sign-in form."""
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        form.form_errors.append("Signing in is not available yet on this server.")
        status = 503
    return render_template("auth/login.html", form=form), status
