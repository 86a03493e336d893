"""Helpdesk pages: find a mailbox, see its state, and reset, unlock, disable or enable it.

Helpdesk members, domain admins and superadmins use them, each within their own
domains (``support_scope``), and only on ordinary mailboxes unless a superadmin.
An address outside one's domains gets 403 whether or not it exists, so these
pages cannot be used to find out which addresses exist elsewhere.
"""

from __future__ import annotations

from datetime import date

from flask import Blueprint
from flask import abort
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask_login import current_user

from .. import quota
from ..access import Actor
from ..access import support_required
from ..account import views as account_views
from ..addresses import InvalidAddress
from ..addresses import canonical_address
from ..clientaddr import client_address
from ..db import get_db
from ..i18n import _
from ..listpages import render_list
from ..queries import aliases as alias_queries
from ..queries import audit
from ..queries import domains as domain_queries
from ..queries import listing
from ..queries import mail_rules as mail_rule_queries
from ..queries import mailboxes as mailbox_queries
from ..queries import quota as quota_queries
from ..queries import sessions as session_queries
from ..queries import throttle
from ..rules import addressing
from ..rules import domains as domain_rules
from ..rules import helpdesk as helpdesk_rules
from ..rules import mail_rules
from ..rules import recovery as recovery_rules
from ..rules import second_factors as factor_rules
from .forms import ActionForm
from .forms import DisableForm
from .forms import EnableForm

bp = Blueprint("helpdesk", __name__, url_prefix="/helpdesk")


@bp.get("/")
@support_required
def index():
    """Find a mailbox among those one may help with."""
    return render_list(
        "helpdesk/index.html",
        lambda s, a, o: listing.support_mailboxes(get_db(), current_user.support_scope, s, a, o),
        listing.SUPPORT_SORTS,
    )


def _target(address: str) -> dict:
    """The mailbox at ``address`` if it is in the user's scope: 403 outside it, 404 inside if missing."""
    try:
        email = canonical_address(address)
    except InvalidAddress:
        abort(404)
    scope = current_user.support_scope
    if scope is not None:
        domain = domain_queries.get_domain_by_name(get_db(), email.rpartition("@")[2])
        if domain is None or domain["id"] not in scope:
            abort(403)
    mailbox = mailbox_queries.get_mailbox(get_db(), email)
    if mailbox is None:
        abort(404)
    return mailbox


def _checked_target(address: str) -> dict:
    """The mailbox, if the user may act on it (not their own; an ordinary one unless superadmin)."""
    mailbox = _target(address)
    if helpdesk_rules.refusal(get_db(), _actor(), mailbox):
        abort(403)
    return mailbox


def _actor() -> Actor:
    return Actor.of_user(current_user, client_address())


def _mailbox_page(mailbox: dict, disable_form=None, enable_form=None, status: int = 200):
    conn = get_db()
    forwarding = addressing.Forwarding.from_rows(mailbox["email"], alias_queries.destinations(conn, mailbox["email"]))
    return render_template(
        "helpdesk/mailbox.html", mailbox=mailbox, forwarding=forwarding,
        usage=quota_queries.mailbox_usage(conn, mailbox["email"]), format_size=quota.format_size,
        failures=throttle.state(conn, "account", mailbox["email"]),
        sessions=session_queries.count_user_sessions(conn, mailbox["id"]),
        # Only this mailbox's own rows (not an earlier owner's of the address), and, below a
        # superadmin, only those of its domain (a role given elsewhere is not the helpdesk's business).
        history=audit.entries_for_target(conn, mailbox["email"], mailbox["created_at"],
                                         None if current_user.is_superadmin else mailbox["domain"], limit=10),
        action_form=ActionForm(formdata=None), disable_form=disable_form or DisableForm(formdata=None),
        enable_form=enable_form or EnableForm(formdata=None),
        # Copies sent on by filters are forwarding too: after a stolen password, the first thing to look at.
        vacation=mail_rule_queries.vacation_of(conn, mailbox["id"]),
        filter_forwards=[f["argument"] for f in mail_rule_queries.filters_of(conn, mailbox["id"])
                         if f["action"] == "redirect"],
        # Where a new password can be sent: after a stolen password, the second thing to look at.
        recovery=recovery_rules.recovery_of(conn, mailbox),
        second_factors=factor_rules.state_of(conn, mailbox["id"]),
    ), status


@bp.get("/mailboxes/<address>")
@support_required
def mailbox(address: str):
    """A mailbox's state: status, storage, forwarding, password, sign-in failures, recent history."""
    return _mailbox_page(_checked_target(address))


def _refused(exc: helpdesk_rules.SupportRefused):
    abort(403, str(exc))


@bp.post("/mailboxes/<address>/reset")
@support_required
def reset_password(address: str):
    """Give the mailbox a one-time password, shown on this response only."""
    mailbox = _checked_target(address)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        temporary = helpdesk_rules.reset_password(get_db(), _actor(), mailbox,
                                                  scheme=current_app.config["PASSWORD_SCHEME"])
    except helpdesk_rules.SupportRefused as exc:
        _refused(exc)
    # Rendered, not redirected: the password must not travel in a flash cookie.
    return render_template("helpdesk/password_reset.html", mailbox=mailbox, temporary=temporary)


@bp.post("/mailboxes/<address>/unlock")
@support_required
def unlock(address: str):
    """Forget the failed sign-ins that lock the mailbox out of the portal."""
    mailbox = _checked_target(address)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        cleared = helpdesk_rules.unlock(get_db(), _actor(), mailbox)
    except helpdesk_rules.SupportRefused as exc:
        _refused(exc)
    if cleared is None:
        flash(_("%(address)s had no failed sign-ins to forget.", address=mailbox["email"]), "info")
    else:
        flash(_("%(address)s is unlocked: %(count)s failed sign-ins forgotten.", address=mailbox["email"],
                count=cleared["failures"]), "success")
    return redirect(url_for("helpdesk.mailbox", address=mailbox["email"]))


@bp.post("/mailboxes/<address>/recovery/remove")
@support_required
def remove_recovery(address: str):
    """Remove the user's recovery address (lost, or set by an intruder); the user is told."""
    mailbox = _checked_target(address)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        removed = recovery_rules.remove_recovery_address_of(get_db(), _actor(), mailbox)
    except helpdesk_rules.SupportRefused as exc:
        _refused(exc)
    if removed:
        flash(_("The recovery address of %(address)s is removed.", address=mailbox["email"]), "success")
    else:
        flash(_("%(address)s had no recovery address.", address=mailbox["email"]), "info")
    return redirect(url_for("helpdesk.mailbox", address=mailbox["email"]))


@bp.post("/mailboxes/<address>/second-factors/remove")
@support_required
def remove_second_factors(address: str):
    """Remove the user's second factors (a lost phone): the password alone signs in again. Never an admin's."""
    mailbox = _checked_target(address)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        removed = factor_rules.remove_second_factors_of(get_db(), _actor(), mailbox)
    except factor_rules.SecondFactorRefused as exc:
        abort(403, str(exc))
    if removed:
        flash(_("The second steps of %(address)s are removed; the user is told.", address=mailbox["email"]),
              "success")
    else:
        flash(_("%(address)s had no second step.", address=mailbox["email"]), "info")
    return redirect(url_for("helpdesk.mailbox", address=mailbox["email"]))


@bp.post("/mailboxes/<address>/disable")
@support_required
def disable(address: str):
    """Disable the mailbox, with a reason: no sign-in, no mail delivered, its sessions ended."""
    return _set_active(address, DisableForm(), active=False)


@bp.post("/mailboxes/<address>/enable")
@support_required
def enable(address: str):
    """Enable the mailbox again."""
    return _set_active(address, EnableForm(), active=True)


def _set_active(address: str, form, *, active: bool):
    mailbox = _checked_target(address)
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            abort(400)
        forms = {"enable_form": form} if active else {"disable_form": form}
        return _mailbox_page(mailbox, status=400, **forms)
    try:
        changed = helpdesk_rules.set_active(get_db(), _actor(), mailbox, active=active,
                                            delimiter=current_app.config["RECIPIENT_DELIMITER"],
                                            reason=(form.reason.data or "").strip())
    except helpdesk_rules.SupportRefused as exc:
        _refused(exc)
    if changed and active:
        flash(_("%(address)s is enabled.", address=mailbox["email"]), "success")
    elif changed:
        flash(_("%(address)s is disabled.", address=mailbox["email"]), "success")
    elif active:
        flash(_("%(address)s was already enabled.", address=mailbox["email"]), "info")
    else:
        flash(_("%(address)s was already disabled.", address=mailbox["email"]), "info")
    return redirect(url_for("helpdesk.mailbox", address=mailbox["email"]))


def _vacation_page(mailbox: dict, form=None, problems=(), status: int = 200):
    conn = get_db()
    return render_template(
        "helpdesk/vacation.html", mailbox=mailbox, form=form or account_views.vacation_form_for(conn, mailbox),
        problems=list(problems), stored=mail_rule_queries.vacation_of(conn, mailbox["id"]),
    ), status


@bp.route("/mailboxes/<address>/vacation", methods=["GET", "POST"])
@support_required
def vacation(address: str):
    """Switch a user's out-of-office reply on or off for them (someone on sick leave); audited, and shown to them."""
    mailbox = _checked_target(address)
    if request.method == "GET":
        return _vacation_page(mailbox)
    conn = get_db()
    form = account_views.vacation_form_for(conn, mailbox, formdata=True)
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            abort(400)
        return _vacation_page(mailbox, form=form, status=400)
    try:
        mail_rules.save_vacation_of(conn, _actor(), mailbox, account_views.vacation_from_form(form),
                                    config=current_app.config, today=date.today())
    except mail_rules.MailRulesRefused as exc:
        return _vacation_page(mailbox, form=form, problems=exc.problems, status=400)
    except mail_rules.MailRulesUnavailable:
        return _vacation_page(mailbox, form=form, status=503, problems=[
            _("The mail server cannot take the change right now. Nothing was changed; try again in a few minutes.")])
    flash(_("The out-of-office reply of %(address)s is saved; they see that an administrator changed it.",
            address=mailbox["email"]), "success")
    return redirect(url_for("helpdesk.mailbox", address=mailbox["email"]))


RECOVERY_PAGE_DOMAINS = 500


@bp.get("/recovery")
@support_required
def recovery():
    """Whether each domain one helps with lets its users reset a forgotten password through a recovery address."""
    return render_template("helpdesk/recovery.html", form=ActionForm(formdata=None),
                           domains=domain_queries.recovery_switches(get_db(), current_user.support_scope,
                                                                    RECOVERY_PAGE_DOMAINS),
                           limit=RECOVERY_PAGE_DOMAINS)


@bp.post("/recovery/<domain>/<state>")
@support_required
def switch_recovery(domain: str, state: str):
    """Switch self-service password recovery on or off (``state``) for one domain."""
    if not ActionForm().validate_on_submit():
        abort(400)
    if state not in ("on", "off"):
        abort(404)
    found = domain_queries.get_domain_by_name(get_db(), domain.lower())
    scope = current_user.support_scope
    if found is None or (scope is not None and found["id"] not in scope):
        abort(403)
    try:
        changed = domain_rules.set_password_recovery(get_db(), _actor(), found["id"], state == "on")
    except domain_rules.RecoverySwitchRefused as exc:
        abort(403, str(exc))
    if changed:
        flash(_("Password recovery is now on for %(domain)s.", domain=found["name"]) if state == "on"
              else _("Password recovery is now off for %(domain)s.", domain=found["name"]), "success")
    return redirect(url_for("helpdesk.recovery"))
