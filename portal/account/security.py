"""Self-service sign-in security: second factors (TOTP app, passkeys, recovery codes), app passwords for mail
clients, and whether mail clients may use the main password."""

from __future__ import annotations

from flask import abort
from flask import current_app
from flask import flash
from flask import jsonify
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from flask_login import current_user

from .. import second_factor
from ..access import Actor
from ..access import account_required
from ..access import enrolment_allowed
from ..clientaddr import client_address
from ..db import get_db
from ..i18n import _
from ..queries import app_passwords as app_password_queries
from ..queries import second_factors as factor_queries
from ..rules import app_passwords as app_password_rules
from ..rules import second_factors as factor_rules
from .forms import AppPasswordForm
from .forms import DeleteForm
from .forms import MailClientsForm
from .forms import PasskeyForm
from .forms import SecurityChangeForm
from .forms import TotpConfirmForm
from .views import bp
from .views import current_password_refusal

PASSKEY_CHALLENGE = "passkey_registration"


def _actor() -> Actor:
    return Actor.of_user(current_user, client_address())


def _security_page(status: int = 200, *, change_form=None, mail_form=None):
    conn = get_db()
    state = factor_rules.state_of(conn, current_user.mailbox_id)
    mail_form = mail_form or MailClientsForm(app_passwords_only=state["mail_clients_use_app_passwords"])
    return render_template("account/security.html", state=state, change_form=change_form or SecurityChangeForm(),
                           start_form=DeleteForm(), mail_form=mail_form, passkey_form=PasskeyForm(),
                           passkeys=factor_queries.passkeys_of(conn, current_user.mailbox_id),
                           must_enrol=current_user.must_enrol_second_factor), status


@bp.get("/account/security")
@enrolment_allowed
def security():
    """Two-step sign-in: the authenticator app, passkeys and recovery codes; and mail clients' password."""
    return _security_page()


@bp.post("/account/security/totp/start")
@enrolment_allowed
def start_totp():
    """Make a new TOTP secret and show its QR code."""
    if not DeleteForm().validate_on_submit():
        abort(400)
    try:
        factor_rules.start_totp(get_db(), _actor())
    except factor_rules.SecondFactorRefused as exc:
        flash(str(exc), "danger")
        return redirect(url_for("account.security"))
    return redirect(url_for("account.totp"))


def _totp_page(form, status: int = 200):
    pending = factor_queries.totp_of(get_db(), current_user.mailbox_id)
    if pending is None or pending["confirmed_at"] is not None:
        return redirect(url_for("account.security"))
    uri = second_factor.totp_uri(pending["secret"], current_user.email)
    return render_template("account/totp.html", form=form, qr=second_factor.qr_svg(uri),
                           secret=pending["secret"]), status


@bp.route("/account/security/totp", methods=["GET", "POST"])
@enrolment_allowed
def totp():
    """Scan the QR code, then confirm with the app's first code."""
    form = TotpConfirmForm()
    if not form.validate_on_submit():
        return _totp_page(form, 400 if form.errors else 200)
    refusal = current_password_refusal(form, "authenticator app enrolment")
    if refusal:
        page, _status = _totp_page(form)
        return page, *refusal
    try:
        codes = factor_rules.confirm_totp(get_db(), _actor(), form.code.data)
    except factor_rules.SecondFactorRefused as exc:
        form.code.errors = [*form.code.errors, str(exc)]
        return _totp_page(form, 400)
    flash(_("Your authenticator app is set up: the portal asks for its code after your password."), "success")
    return _codes_or_back(codes)


def _codes_or_back(codes: list[str] | None):
    if codes:
        return render_template("account/recovery_codes.html", codes=codes, first=True)
    return redirect(url_for("account.security"))


def _checked_change_form():
    """The submitted SecurityChangeForm once its current password is right, else the page to answer with."""
    form = SecurityChangeForm()
    if not form.validate_on_submit():
        return None, _security_page(400, change_form=form)
    refusal = current_password_refusal(form, "second factor change")
    if refusal:
        status, headers = refusal
        page, _status = _security_page(status, change_form=form)
        return None, (page, status, headers)
    return form, None


@bp.post("/account/security/totp/remove")
@enrolment_allowed
def remove_totp():
    """Remove the authenticator app (the current password first)."""
    form, answer = _checked_change_form()
    if answer:
        return answer
    try:
        factor_rules.remove_totp(get_db(), _actor())
    except factor_rules.SecondFactorRefused as exc:
        flash(str(exc), "danger")
    else:
        flash(_("The authenticator app is removed."), "success")
    return redirect(url_for("account.security"))


@bp.post("/account/security/recovery-codes")
@enrolment_allowed
def renew_recovery_codes():
    """Make ten new recovery codes (the old ones stop working), shown once."""
    form, answer = _checked_change_form()
    if answer:
        return answer
    try:
        codes = factor_rules.renew_recovery_codes(get_db(), _actor())
    except factor_rules.SecondFactorRefused as exc:
        flash(str(exc), "danger")
        return redirect(url_for("account.security"))
    return render_template("account/recovery_codes.html", codes=codes, first=False)


@bp.post("/account/security/passkeys/options")
@enrolment_allowed
def passkey_options():
    """The options for the browser to make a new passkey (JSON), once the current password is right; the
    challenge is kept in the session (only then: the last step needs it)."""
    form = PasskeyForm()
    form.credential.data = form.credential.data or "-"  # the browser's answer comes with the last step
    if not form.validate_on_submit():
        return jsonify(error=_("Enter your current password.")), 400
    refusal = current_password_refusal(form, "passkey enrolment")
    if refusal:
        status, headers = refusal
        message = (form.form_errors or form.current_password.errors or [_("The passkey could not be added.")])[-1]
        return jsonify(error=str(message)), status, headers
    rp_id, _origin = _relying_party()
    options, challenge = second_factor.registration_options(
        rp_id, str(current_user.mailbox_id).encode(), current_user.email,
        factor_rules.existing_passkeys(get_db(), current_user.mailbox_id))
    session[PASSKEY_CHALLENGE] = challenge.hex()
    return current_app.response_class(options, mimetype="application/json")


def _relying_party() -> tuple[str, str]:
    return second_factor.relying_party(current_app.config["PUBLIC_URL"], request.host_url)


@bp.post("/account/security/passkeys")
@enrolment_allowed
def add_passkey():
    """Keep the passkey the browser made, once the portal has checked it."""
    form = PasskeyForm()
    challenge = session.pop(PASSKEY_CHALLENGE, None)
    if not form.validate_on_submit() or not challenge:
        return jsonify(error=_("The passkey could not be added. Please try again.")), 400
    rp_id, origin = _relying_party()
    try:
        credential_id, public_key, sign_count = second_factor.verify_registration(
            form.credential.data, bytes.fromhex(challenge), rp_id, origin)
        codes = factor_rules.add_passkey(get_db(), _actor(), name=form.name.data or "", credential_id=credential_id,
                                         public_key=public_key, sign_count=sign_count)
    except ValueError as exc:
        message = str(exc) if isinstance(exc, factor_rules.SecondFactorRefused) else _(
            "The browser's answer could not be checked, so the passkey was not added.")
        return jsonify(error=message), 400
    if codes:
        # Shown by the page itself, once: never kept in the (signed, not secret) session cookie.
        response = jsonify(codes=codes, message=_("The passkey is added: the portal asks for it after your"
                                                  " password."), next=url_for("account.security"))
        response.headers["Cache-Control"] = "no-store"
        return response
    flash(_("The passkey is added."), "success")
    return jsonify(next=url_for("account.security"))


@bp.post("/account/security/passkeys/<int:passkey_id>/remove")
@enrolment_allowed
def remove_passkey(passkey_id: int):
    """Remove one passkey (the current password first)."""
    form, answer = _checked_change_form()
    if answer:
        return answer
    try:
        name = factor_rules.remove_passkey(get_db(), _actor(), passkey_id)
    except factor_rules.SecondFactorRefused as exc:
        flash(str(exc), "danger")
    else:
        flash(_("The passkey \u201c%(name)s\u201d is removed.", name=name), "success")
    return redirect(url_for("account.security"))


@bp.post("/account/security/mail-clients")
@account_required
def mail_clients():
    """Whether mail clients must use app passwords."""
    form = MailClientsForm()
    if not form.validate_on_submit():
        return _security_page(400, mail_form=form)
    refusal = current_password_refusal(form, "mail client setting")
    if refusal:
        page, _status = _security_page(mail_form=form)
        return page, *refusal
    factor_rules.set_mail_clients_use_app_passwords(get_db(), _actor(), form.app_passwords_only.data)
    flash(_("Mail clients must now use app passwords.") if form.app_passwords_only.data
          else _("Mail clients may now use your main password too."), "success")
    return redirect(url_for("account.security"))


def _app_passwords_page(form, status: int = 200, new_password: str | None = None, new_name: str | None = None):
    form.services.choices = [(key, str(label)) for key, label in app_password_rules.SERVICES.items()]
    if form.services.data is None:
        form.services.data = ["imap", "smtp"]
    conn = get_db()
    return render_template("account/app_passwords.html", form=form, revoke_form=DeleteForm(),
                           app_passwords=app_password_queries.of_mailbox(conn, current_user.mailbox_id),
                           services=app_password_rules.SERVICES, new_password=new_password, new_name=new_name,
                           state=factor_rules.state_of(conn, current_user.mailbox_id)), status


@bp.route("/account/app-passwords", methods=["GET", "POST"])
@account_required
def app_passwords():
    """List, and make, passwords for mail clients: each shown once."""
    form = AppPasswordForm()
    if not form.validate_on_submit():
        return _app_passwords_page(form, 400 if form.errors else 200)
    refusal = current_password_refusal(form, "app password")
    if refusal:
        page, _status = _app_passwords_page(form)
        return page, *refusal
    try:
        password = app_password_rules.create_app_password(get_db(), _actor(), name=form.name.data,
                                                          services=form.services.data or [],
                                                          scheme=current_app.config["PASSWORD_SCHEME"])
    except app_password_rules.AppPasswordRefused as exc:
        form.form_errors.append(str(exc))
        return _app_passwords_page(form, 400)
    response = current_app.make_response(_app_passwords_page(AppPasswordForm(formdata=None), 200, password,
                                                             " ".join(form.name.data.split())))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/account/app-passwords/<int:app_password_id>/revoke")
@account_required
def revoke_app_password(app_password_id: int):
    """Revoke an app password: a client using it fails at its next login."""
    if not DeleteForm().validate_on_submit():
        abort(400)
    try:
        name = app_password_rules.revoke_app_password(get_db(), _actor(), app_password_id)
    except app_password_rules.AppPasswordRefused as exc:
        flash(str(exc), "danger")
    else:
        flash(_("The app password \u201c%(name)s\u201d is revoked.", name=name), "success")
    return redirect(url_for("account.app_passwords"))
