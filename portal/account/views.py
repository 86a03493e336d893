"""Dashboard and password change of the signed-in mailbox."""

from __future__ import annotations

import logging
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta

from flask import Blueprint
from flask import abort
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import session
from flask import url_for
from flask_babel import get_locale
from flask_login import current_user
from flask_login import login_user
from wtforms import SelectChoice

from .. import doveadm
from .. import notices
from .. import passwords
from .. import quota
from .. import sessions
from .. import sieve
from .. import signin
from ..access import Actor
from ..access import account_required
from ..access import signed_in
from ..auth.views import MAIL_SERVER_DOWN
from ..clientaddr import client_address
from ..db import get_db
from ..db import release_db
from ..i18n import _
from ..imap import ImapUnavailable
from ..queries import aliases as alias_queries
from ..queries import api_tokens as token_queries
from ..queries import audit
from ..queries import domains
from ..queries import mail_rules as mail_rule_queries
from ..queries import mailboxes
from ..queries import quota as quota_queries
from ..queries import sessions as session_queries
from ..rules import account as account_rules
from ..rules import addressing
from ..rules import api_tokens as token_rules
from ..rules import forwarding as forwarding_rules
from ..rules import mail_rules
from ..rules import recovery as recovery_rules
from ..rules import second_factors as second_factor_rules
from ..rules import send_as as send_as_rules
from .forms import ApiTokenForm
from .forms import DeleteForm
from .forms import FiltersForm
from .forms import ForwardingForm
from .forms import PasswordChangeForm
from .forms import PersonalAliasForm
from .forms import RecoveryAddressForm
from .forms import VacationForm

bp = Blueprint("account", __name__)
log = logging.getLogger(__name__)


@bp.get("/")
@account_required
def index():
    """The signed-in user's start page."""
    conn = get_db()
    mailbox = mailboxes.get_mailbox(conn, current_user.email)
    usage = quota_queries.mailbox_usage(conn, current_user.email)
    percent = quota.usage_percent(usage["used_bytes"], usage["limit_bytes"])
    return render_template("account/index.html", mailbox=mailbox,
                           forwarding=forwarding_rules.current_forwarding(conn, current_user.email),
                           usage=usage, percent=percent, warn=quota.is_almost_full(percent),
                           format_size=quota.format_size,
                           sign_ins=session_queries.recent_sign_ins(conn, mailbox["id"]),
                           send_as=send_as_rules.send_as_of(conn, mailbox["id"]),
                           vacation=mail_rule_queries.vacation_of(conn, mailbox["id"]), today=date.today(),
                           filter_count=len(mail_rule_queries.filters_of(conn, mailbox["id"])),
                           recovery=recovery_rules.recovery_of(conn, mailbox),
                           security=second_factor_rules.state_of(conn, mailbox["id"]),
                           history=audit.account_history(conn, current_user.email, mailbox["created_at"]))


def current_password_refusal(form, purpose: str) -> tuple[int, dict] | None:
    """Check the form's current password with Dovecot: None if it is right, else the status and headers to
    answer with, the form's errors filled in (wrong, locked, too many checks waiting, Dovecot away)."""
    try:
        outcome = signin.check_password(current_user.email, form.current_password.data, client_address())
    except ImapUnavailable as exc:
        log.error("%s could not check the current password: %s", purpose, exc)
        form.form_errors.append(MAIL_SERVER_DOWN)
        return 503, {}
    if outcome.status == "locked":
        form.form_errors.append(_("Too many wrong passwords. Please wait a few minutes and try again."))
        return 429, {}
    busy = signin.busy_refusal(outcome)
    if busy:
        form.form_errors.append(busy[0])
        return busy[1], {"Retry-After": str(signin.BUSY_RETRY_AFTER)}
    if outcome.status != "ok":
        form.current_password.errors = [*form.current_password.errors, _("The current password is not correct.")]
        return 400, {}
    return None


@bp.route("/account/password", methods=["GET", "POST"])
@signed_in
def password():
    """Change the password: checked by Dovecot, then every session is replaced."""
    config = current_app.config
    form = PasswordChangeForm()
    if not form.validate_on_submit():
        return render_template("account/password.html", form=form), 400 if form.errors else 200
    problems = passwords.configured_policy_problems(config, form.new_password.data, address=current_user.email,
                                                    current=form.current_password.data)
    if problems:
        form.new_password.errors = list(form.new_password.errors) + problems
        return render_template("account/password.html", form=form), 400

    refusal = current_password_refusal(form, "password change")
    if refusal:
        return render_template("account/password.html", form=form), *refusal

    conn = get_db()  # the check gave the request's connection back while Dovecot answered
    user = account_rules.change_own_password(
        conn, Actor.of_user(current_user, client_address()), form.new_password.data, config["PASSWORD_SCHEME"],
        new_session=lambda mailbox: sessions.start_session(conn, mailbox, client_address(), signed_in=False))
    session.clear()
    session.permanent = True
    login_user(user)
    flash(_("Your password has been changed. Any other sessions have been signed out."), "success")
    return redirect(url_for("account.index"))


def _forwarding_page(conn, forwarding_form=None, alias_form=None, status=200):
    mailbox = mailboxes.get_mailbox(conn, current_user.email)
    domain = domains.get_domain(conn, mailbox["domain_id"])
    current = forwarding_rules.current_forwarding(conn, mailbox["email"])
    if forwarding_form is None:
        forwarding_form = ForwardingForm(
            formdata=None, destinations="\n".join(current.destinations), keep_copy=current.keep_copy
        )
    personal = alias_queries.personal_aliases(conn, mailbox["id"])
    return render_template(
        "account/forwarding.html",
        mailbox=mailbox,
        domain=domain,
        current=current,
        form=forwarding_form,
        alias_form=alias_form or PersonalAliasForm(formdata=None),
        delete_form=DeleteForm(),
        personal=personal,
        max_destinations=int(current_app.config["FORWARD_MAX_DESTINATIONS"]),
    ), status


@bp.get("/account/forwarding")
@account_required
def forwarding():
    """Where the user's mail goes, and their personal aliases."""
    return _forwarding_page(get_db())


@bp.post("/account/forwarding")
@account_required
def save_forwarding():
    """Replace the user's forwarding in one transaction."""
    conn = get_db()
    form = ForwardingForm()
    if not form.validate_on_submit():
        return _forwarding_page(conn, forwarding_form=form, status=400)
    wanted_list, problems = addressing.parse_destinations((form.destinations.data or "").splitlines())
    if problems:
        form.destinations.errors = list(form.destinations.errors) + problems
        return _forwarding_page(conn, forwarding_form=form, status=400)
    wanted = addressing.Forwarding(tuple(wanted_list), keep_copy=bool(form.keep_copy.data))
    try:
        before, after = forwarding_rules.save_forwarding(
            conn, _actor(), wanted, int(current_app.config["FORWARD_MAX_DESTINATIONS"]),
            current_app.config["RECIPIENT_DELIMITER"])
    except addressing.AliasRuleError as exc:
        form.destinations.errors = list(form.destinations.errors) + exc.problems
        return _forwarding_page(conn, forwarding_form=form, status=400)
    if after == before:
        flash(_("Nothing changed."), "info")
    elif after.destinations and after.keep_copy:
        flash(_("Forwarding saved. New mail goes to %(addresses)s and stays in your mailbox.",
                addresses=", ".join(after.destinations)), "success")
    elif after.destinations:
        flash(_("Forwarding saved. New mail goes to %(addresses)s only.", addresses=", ".join(after.destinations)),
              "success")
    else:
        flash(_("Forwarding is off. New mail is delivered to your mailbox."), "success")
    return redirect(url_for("account.forwarding"))


def _actor() -> Actor:
    return Actor.of_user(current_user, client_address())


@bp.post("/account/aliases")
@account_required
def add_personal_alias():
    """Create a personal alias in the user's own domain."""
    conn = get_db()
    form = PersonalAliasForm()
    if not form.validate_on_submit():
        return _forwarding_page(conn, alias_form=form, status=400)
    config = current_app.config
    try:
        source = forwarding_rules.add_personal_alias(
            conn, _actor(), form.local_part.data, reserved=list(config["RESERVED_LOCAL_PARTS"]),
            delimiter=config["RECIPIENT_DELIMITER"])
    except addressing.AliasRuleError as exc:
        form.local_part.errors = list(form.local_part.errors) + exc.problems
        return _forwarding_page(conn, alias_form=form, status=400)
    flash(_("%(address)s now delivers to your mailbox.", address=source), "success")
    return redirect(url_for("account.forwarding"))


@bp.post("/account/aliases/<int:alias_id>/delete")
@account_required
def delete_personal_alias(alias_id: int):
    """Remove one of the user's own personal aliases (404 for anything else)."""
    if not DeleteForm().validate_on_submit():
        abort(400)
    source = forwarding_rules.delete_personal_alias(get_db(), _actor(), alias_id)
    if source is None:
        abort(404)
    flash(_("%(address)s no longer exists.", address=source), "success")
    return redirect(url_for("account.forwarding"))


@bp.get("/account/storage")
@account_required
def storage():
    """How much of the mailbox's quota is in use, as Dovecot last reported it."""
    usage = quota_queries.mailbox_usage(get_db(), current_user.email)
    percent = quota.usage_percent(usage["used_bytes"], usage["limit_bytes"])
    return render_template(
        "account/storage.html",
        usage=usage,
        percent=percent,
        warn=quota.is_almost_full(percent),
        format_size=quota.format_size,
        folders_known=doveadm.is_configured(current_app.config),
        folders=_biggest_folders(current_user.email) if doveadm.is_configured(current_app.config) else None,
    )


def _biggest_folders(address: str, shown: int = 10) -> list[dict] | None:
    """The mailbox's biggest folders as Dovecot counts them now; None where Dovecot cannot say."""
    config = current_app.config
    # Not the database's connection: nothing waits on Dovecot while holding one.
    release_db()
    try:
        return doveadm.folder_sizes(config, address)[:shown]
    except doveadm.DoveadmUnavailable as exc:
        log.warning("folder sizes of %s not shown: %s", address, exc)
        return None


def _tokens_page(form=None, shown=None, status=200):
    if not current_user.is_support:  # only people holding a role have tokens
        abort(403)
    return render_template("account/api_tokens.html", form=form or ApiTokenForm(formdata=None),
                           tokens=token_queries.of_mailbox(get_db(), current_user.mailbox_id),
                           revoke_form=DeleteForm(formdata=None), shown=shown,
                           timedelta_day=timedelta(days=1)), status


@bp.get("/account/api-tokens")
@account_required
def api_tokens():
    """The signed-in person's API tokens: when and from where each was last used; make or revoke one."""
    return _tokens_page()


@bp.post("/account/api-tokens")
@account_required
def create_api_token():
    """Make a token and show it once, on this response only."""
    form = ApiTokenForm()
    if not current_user.is_support:
        abort(403)
    if not form.validate_on_submit():
        return _tokens_page(form, status=400)
    domains = [line.strip().lower() for line in (form.domains.data or "").splitlines() if line.strip()]
    expires_at = None
    if form.expires_on.data:
        # Valid through the chosen day, in UTC: the token stops at the next midnight. (The last day of year
        # 9999 has no next one: the rule refuses anything that far anyway.)
        day = min(form.expires_on.data, date(9998, 12, 31))
        expires_at = datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)
    try:
        token = token_rules.create_token(get_db(), _actor(), name=form.name.data or "", domains=domains or None,
                                         read_only=bool(form.read_only.data), expires_at=expires_at)
    except token_rules.TokenRefused as exc:
        form.form_errors.append(str(exc))
        return _tokens_page(form, status=400)
    return _tokens_page(shown=token, status=201)


@bp.post("/account/api-tokens/<int:token_id>/revoke")
@account_required
def revoke_api_token(token_id: int):
    """Revoke one of the person's tokens: the next call with it is refused."""
    if not DeleteForm().validate_on_submit():
        abort(400)
    try:
        token_rules.revoke_token(get_db(), _actor(), token_id)
    except token_rules.TokenRefused:
        abort(404)
    flash(_("The token is revoked. Calls with it are refused from now on."), "success")
    return redirect(url_for("account.api_tokens"))


def _sieve_status(address: str) -> dict:
    """Whether the portal's script is the active one, and another client's active script if any (None: unknown)."""
    config = current_app.config
    if not doveadm.is_configured(config):
        return {"known": False, "active": False, "other": None}
    try:
        scripts = doveadm.sieve_scripts(config, address)
    except doveadm.DoveadmUnavailable:
        return {"known": False, "active": False, "other": None}
    return {"known": True, "active": any(s["active"] and s["name"] == sieve.SCRIPT_NAME for s in scripts),
            "other": mail_rules.other_clients_script(config, address)}


def vacation_from_form(form: VacationForm) -> sieve.Vacation:
    """The reply a submitted form asks for (the rule checks it)."""
    return sieve.Vacation(
        enabled=bool(form.enabled.data), subject=(form.subject.data or "").strip(),
        body=(form.body.data or "").replace("\r\n", "\n").strip("\n"), first_day=form.first_day.data,
        last_day=form.last_day.data, interval_days=int(form.interval_days.data or 0),
        addresses=tuple(form.addresses.data or ()))


def vacation_form_for(conn, mailbox: dict, formdata=None) -> VacationForm:
    """The reply form, filled from what is stored, with the mailbox's addresses to choose from."""
    stored = mail_rule_queries.vacation_of(conn, mailbox["id"])
    offered = mail_rules.reply_addresses(conn, mailbox["email"])
    candidates = [c["address"] for c in offered]
    if formdata is None and stored is not None:
        form = VacationForm(formdata=None, enabled=stored["enabled"], subject=stored["subject"], body=stored["body"],
                            first_day=stored["first_day"], last_day=stored["last_day"],
                            interval_days=stored["interval_days"],
                            addresses=[a for a in stored["addresses"] if a in candidates])
    elif formdata is None:
        # Ticked at first: the mailbox's own addresses, not a group alias (every member would answer it).
        form = VacationForm(formdata=None, addresses=[c["address"] for c in offered if c["own"]])
    else:
        form = VacationForm()
    form.addresses.choices = [SelectChoice(a, a) for a in candidates]
    return form


def _vacation_page(conn, form=None, problems=(), other=None, status=200):
    mailbox = mailboxes.get_mailbox(conn, current_user.email)
    return render_template(
        "account/vacation.html", form=form or vacation_form_for(conn, mailbox), problems=list(problems),
        stored=mail_rule_queries.vacation_of(conn, mailbox["id"]), sieve_status=_sieve_status(mailbox["email"]),
        other=other, today=date.today(),
    ), status


@bp.get("/account/vacation")
@account_required
def vacation():
    """The user's out-of-office reply."""
    return _vacation_page(get_db())


def _mail_rules_failure(exc, page, form):
    """The page again, saying why nothing was saved: refused (400), a choice needed (409), Dovecot away (503)."""
    if isinstance(exc, mail_rules.ScriptsConflict):
        return page(get_db(), form=form, other={"name": exc.name, "text": exc.text}, problems=[exc.problem],
                    status=409)
    if isinstance(exc, mail_rules.OtherScriptActive):
        return page(get_db(), form=form, other={"name": exc.name, "text": exc.text},
                    problems=[_("Another program (for example Roundcube or Thunderbird) has made its own filters"
                                " active. Choose whether to keep them alongside your settings here, then save"
                                " again.")], status=409)
    if isinstance(exc, mail_rules.MailRulesUnavailable):
        log.warning("mail rules not saved: %s", exc)
        return page(get_db(), form=form, problems=[_("The mail server cannot take the change right now. Nothing"
                                                     " was changed; try again in a few minutes.")], status=503)
    return page(get_db(), form=form, problems=exc.problems, status=400)


@bp.post("/account/vacation")
@account_required
def save_vacation():
    """Store the user's out-of-office reply and write it to the mail server, in one transaction."""
    conn = get_db()
    mailbox = mailboxes.get_mailbox(conn, current_user.email)
    form = vacation_form_for(conn, mailbox, formdata=True)
    if not form.validate_on_submit():
        return _vacation_page(conn, form=form, status=400)
    wanted = vacation_from_form(form)
    try:
        mail_rules.save_vacation(conn, _actor(), wanted, config=current_app.config, today=date.today(),
                                 choice=form.choice.data or None)
    except (mail_rules.MailRulesRefused, mail_rules.OtherScriptActive, mail_rules.MailRulesUnavailable) as exc:
        return _mail_rules_failure(exc, _vacation_page, form)
    if wanted.enabled:
        flash(_("Your out-of-office reply is on."), "success")
    else:
        flash(_("Your out-of-office reply is off."), "success")
    return redirect(url_for("account.vacation"))


def _filters_form(conn, mailbox_id: int) -> FiltersForm:
    stored = mail_rule_queries.filters_of(conn, mailbox_id)
    blank = {"field": "from", "match": "contains", "value": "", "action": "fileinto", "argument": ""}
    rows = [*stored, *([blank] * (2 if len(stored) < mail_rules.MOST_FILTERS - 1 else 0))]
    return FiltersForm(formdata=None, rows=rows)


def _filters_page(conn, form=None, problems=(), other=None, status=200):
    mailbox = mailboxes.get_mailbox(conn, current_user.email)
    return render_template(
        "account/filters.html", form=form or _filters_form(conn, mailbox["id"]), problems=list(problems),
        stored=mail_rule_queries.filters_of(conn, mailbox["id"]), sieve_status=_sieve_status(mailbox["email"]),
        other=other, most=mail_rules.MOST_FILTERS,
    ), status


@bp.get("/account/filters")
@account_required
def filters():
    """The user's mail filters, in words and as a form."""
    return _filters_page(get_db())


@bp.post("/account/filters")
@account_required
def save_filters():
    """Store the user's filters in the order given and write them to the mail server, in one transaction."""
    conn = get_db()
    form = FiltersForm()
    if not form.validate_on_submit():
        return _filters_page(conn, form=form, status=400)
    wanted = [{"field": row.field.data, "match": row.match.data, "value": (row.value.data or "").strip(),
               "action": row.action.data, "argument": (row.argument.data or "").strip()}
              for row in form.rows if (row.value.data or "").strip()]
    try:
        mail_rules.save_filters(conn, _actor(), wanted, config=current_app.config,
                                max_destinations=int(current_app.config["FORWARD_MAX_DESTINATIONS"]),
                                delimiter=current_app.config["RECIPIENT_DELIMITER"], choice=form.choice.data or None)
    except (mail_rules.MailRulesRefused, mail_rules.OtherScriptActive, mail_rules.MailRulesUnavailable) as exc:
        return _mail_rules_failure(exc, _filters_page, form)
    flash(_("Your filters are saved (%(count)s).", count=len(wanted)), "success")
    return redirect(url_for("account.filters"))


def _recovery_page(form=None, status: int = 200, headers: dict | None = None):
    conn = get_db()
    mailbox = mailboxes.get_mailbox(conn, current_user.email)
    state = recovery_rules.recovery_of(conn, mailbox)
    if form is None:
        form = RecoveryAddressForm(formdata=None, address=state["address"] or "")
    form.current_password.data = ""
    return render_template("account/recovery.html", form=form, state=state, sends=notices.enabled()), status, (
        headers or {})


@bp.get("/account/recovery")
@account_required
def recovery():
    """The recovery address: where a link to choose a new password can be sent."""
    return _recovery_page()


@bp.post("/account/recovery")
@account_required
def save_recovery():
    """Set, change or remove the recovery address; a new one gets a link that makes it count."""
    form = RecoveryAddressForm()
    if not form.validate_on_submit():
        return _recovery_page(form, 400)
    refusal = current_password_refusal(form, "recovery address change")
    if refusal:
        return _recovery_page(form, *refusal)
    conn = get_db()  # the check gave the request's connection back while Dovecot answered
    try:
        link = recovery_rules.set_recovery_address(conn, Actor.of_user(current_user, client_address()),
                                                   form.address.data or "", language=str(get_locale()),
                                                   delimiter=current_app.config["RECIPIENT_DELIMITER"])
    except recovery_rules.RecoveryRefused as exc:
        form.address.errors = [*form.address.errors, str(exc)]
        return _recovery_page(form, 400)
    response = redirect(url_for("account.recovery"))
    if link is None:
        flash(_("Your recovery address is saved.") if form.address.data else _("Your recovery address is removed."),
              "success")
    else:
        notices.send_after_response(response, link.mailbox["id"], link.recipient, notices.verify_link,
                                    link.mailbox["email"], link.recipient,
                                    notices.public_link(url_for("auth.verify_recovery", token=link.token)))
        flash(_("A link is on its way to %(address)s. Open it within 24 hours to confirm the address. Nothing "
                "came? Save the address again later.", address=link.recipient), "success")
    return response
