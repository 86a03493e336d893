"""Administration: the domains, mailboxes and aliases in an admin's scope."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC
from datetime import datetime
from datetime import time
from datetime import timedelta

from flask import Blueprint
from flask import Response
from flask import abort
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import stream_with_context
from flask import url_for
from flask_login import current_user

from .. import access
from .. import passwords
from .. import quota
from ..access import Actor
from ..access import admin_required
from ..access import superadmin_required
from ..account.forms import DeleteForm
from ..addresses import InvalidAddress
from ..addresses import canonical_address
from ..clientaddr import client_address
from ..db import get_db
from ..i18n import _
from ..listpages import render_list
from ..queries import alias_domains as alias_domain_queries
from ..queries import aliases as alias_queries
from ..queries import domains as domain_queries
from ..queries import listing
from ..queries import mailboxes as mailbox_queries
from ..queries import notices as notice_queries
from ..queries import overview as overview_queries
from ..queries import roles as role_queries
from ..rules import addressing
from ..rules import alias_domains as alias_domain_rules
from ..rules import aliases as alias_rules
from ..rules import bulk_mailboxes as bulk_rules
from ..rules import domains as domain_rules
from ..rules import mailboxes as mailbox_rules
from ..rules import roles as role_rules
from ..rules import send_as as send_as_rules
from .forms import STATE_LABELS
from .forms import AliasDomainForm
from .forms import AliasDomainStateForm
from .forms import AliasForm
from .forms import AuditFilterForm
from .forms import BulkSelectForm
from .forms import DeleteDomainForm
from .forms import DeleteMailboxForm
from .forms import DomainForm
from .forms import EditMailboxForm
from .forms import GrantRoleForm
from .forms import NewMailboxForm
from .forms import SendAsForm

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _scope() -> list[int] | None:
    """The domain ids the admin may see; None for a superadmin (all)."""
    if current_user.is_superadmin:
        return None
    return [r["domain_id"] for r in current_user.roles if r["role"] == "domain_admin"]


def _domain_or_404(name: str) -> dict:
    # Out of scope looks the same as missing: no hint about other domains.
    row = domain_queries.get_domain_by_name(get_db(), name.lower())
    scope = _scope()
    if row is None or (scope is not None and row["id"] not in scope):
        abort(404)
    return row


@bp.get("/")
@admin_required
def index():
    """The overview of the admin's scope: counts, what needs attention, the last changes, the first domains."""
    conn = get_db()
    scope = _scope()
    page = listing.domains(conn, scope, listing.Search(), None, limit=10)
    removals, removal_count = overview_queries.pending_removals(conn, _scope_names(scope))
    changes = listing.audit_entries(conn, _audit_scope(), listing.AuditFilter(), limit=5).rows
    # One domain in scope: each figure links straight to that domain's filtered mailbox list.
    only = page.rows[0] if len(page.rows) == 1 and page.next_after is None else None
    return render_template("admin/index.html", domains=page.rows, more=page.next_after is not None,
                           roles=current_user.roles, figures=overview_queries.figures(conn, scope), only=only,
                           removals=removals, removal_count=removal_count,
                           removals_counted=overview_queries.REMOVALS_COUNTED, changes=changes,
                           # Notices Postfix did not take: the operator's business, so the superadmin's.
                           unsent=notice_queries.unsent(conn) if current_user.is_superadmin else None)


def _scope_names(scope: list[int] | None) -> list[str] | None:
    """The names of the domains in ``scope`` (None: all)."""
    if scope is None:
        return None
    return [r["domain"] for r in current_user.roles if r["role"] == "domain_admin" and r["domain_id"] in scope]


@bp.get("/domains")
@admin_required
def domains():
    """All domains in scope, searchable, a page at a time, narrowed to a state (near limits, nearly full...)."""
    def fetch(search, after, sort, state):
        page = listing.domains(get_db(), _scope(), search, after, sort, state=state)
        linked = alias_domain_queries.of_domains(get_db(), [d["id"] for d in page.rows])
        return listing.Page([{**d, "alias_domains": linked.get(d["id"], [])} for d in page.rows], page.next_after)

    return render_list("admin/domains.html", fetch, listing.DOMAIN_SORTS, states=STATE_LABELS["domains"])


@bp.get("/domains/<name>/mailboxes")
@admin_required
def mailboxes(name: str):
    """The mailboxes of a domain with their limit and usage, a page at a time, narrowed to a state."""
    domain = _domain_or_404(name)
    return render_list(
        "admin/mailboxes.html",
        lambda s, a, o, state: listing.mailboxes(get_db(), domain["id"], s, a, o, state=state),
        listing.MAILBOX_SORTS, states=STATE_LABELS["mailboxes"],
        state_sorts={"over-80": listing.USAGE_STATE_SORTS, "over-95": listing.USAGE_STATE_SORTS},
        domain=domain, bulk_form=BulkSelectForm(),
    )


@bp.get("/removals")
@admin_required
def removals():
    """Deleted mailboxes of the admin's scope whose mail is kept until its purge, soonest first."""
    try:
        page = listing.removals(get_db(), _scope_names(_scope()), request.args.get("after"))
    except listing.InvalidCursor:
        abort(400)
    return render_template("admin/removals.html", page=page)


@bp.get("/domains/<name>/aliases")
@admin_required
def aliases(name: str):
    """The aliases of a domain with their destinations, a page at a time."""
    domain = _domain_or_404(name)
    return render_list("admin/aliases.html", lambda s, a, o: listing.aliases(get_db(), domain["id"], s, a, o),
                        listing.ALIAS_SORTS, domain=domain)


@bp.route("/domains/<name>/mailboxes/new", methods=["GET", "POST"])
@admin_required
def new_mailbox(name: str):
    """Create a mailbox; a generated password is shown once, on this response only."""
    domain = _domain_or_404(name)
    form = NewMailboxForm()
    if not form.validate_on_submit():
        return render_template("admin/new_mailbox.html", form=form, domain=domain), 400 if form.errors else 200
    config = current_app.config
    try:
        address = mailbox_rules.address_for(form.local_part.data, domain)
        limit = quota.parse_size(form.quota.data or "")
    except (mailbox_rules.MailboxRuleError, quota.InvalidSize) as exc:
        field = form.quota if isinstance(exc, quota.InvalidSize) else form.local_part
        field.errors = list(field.errors) + [str(exc)]
        return render_template("admin/new_mailbox.html", form=form, domain=domain), 400
    generated = passwords.generate_password() if form.generate.data else None
    password = generated or form.password.data
    if not generated:
        problems = passwords.configured_policy_problems(config, password, address=address)
        if problems:
            form.password.errors = list(form.password.errors) + problems
            return render_template("admin/new_mailbox.html", form=form, domain=domain), 400
    try:
        mailbox_rules.create_mailbox(
            get_db(), _actor(), domain_id=domain["id"], address=address,
            password_hash=passwords.hash_password(password, config["PASSWORD_SCHEME"]), quota_bytes=limit,
            display_name=(form.display_name.data or "").strip(), reserved=list(config["RESERVED_LOCAL_PARTS"]),
            must_change=not form.final.data,
        )
    except mailbox_rules.MailboxRefused as exc:
        abort(403, str(exc))
    except mailbox_rules.MailboxRuleError as exc:
        form.form_errors.append(str(exc))
        return render_template("admin/new_mailbox.html", form=form, domain=domain), 409
    # Rendered, not redirected: a generated password must not travel in a flash cookie.
    return render_template("admin/mailbox_created.html", domain=domain, address=address, generated=generated,
                           final=bool(form.final.data))


def _mailbox_or_404(domain: dict, address: str) -> dict:
    mailbox = mailbox_queries.get_mailbox(get_db(), address.lower())
    if mailbox is None or mailbox["domain_id"] != domain["id"]:
        abort(404)
    return mailbox


@bp.route("/domains/<name>/mailboxes/<address>", methods=["GET", "POST"])
@admin_required
def edit_mailbox(name: str, address: str):
    """Change a mailbox's size limit, active flag or password."""
    domain = _domain_or_404(name)
    mailbox = _mailbox_or_404(domain, address)
    _refuse_unless_manageable(mailbox)
    form = EditMailboxForm()
    if request.method == "GET":
        _fill_mailbox_form(form, mailbox)
    page = {"domain": domain, "mailbox": mailbox, "form": form}
    if not form.validate_on_submit():
        return render_template("admin/edit_mailbox.html", **page), 400 if form.errors else 200
    config = current_app.config
    try:
        limit = quota.parse_size(form.quota.data or "")
    except quota.InvalidSize as exc:
        form.quota.errors = list(form.quota.errors) + [str(exc)]
        return render_template("admin/edit_mailbox.html", **page), 400
    password_hash = None
    if form.new_password.data:
        problems = passwords.configured_policy_problems(config, form.new_password.data, address=mailbox["email"])
        if problems:
            form.new_password.errors = list(form.new_password.errors) + problems
            return render_template("admin/edit_mailbox.html", **page), 400
        password_hash = passwords.hash_password(form.new_password.data, config["PASSWORD_SCHEME"])
    try:
        changes = mailbox_rules.update_mailbox(
            get_db(), _actor(), mailbox=mailbox, quota_bytes=limit, active=bool(form.active.data),
            password_hash=password_hash, display_name=(form.display_name.data or "").strip(),
            must_change=password_hash is not None and not form.final.data, expected_version=form.version.data or None,
            delimiter=current_app.config["RECIPIENT_DELIMITER"],
        )
    except mailbox_rules.MailboxRefused as exc:
        form.form_errors.append(str(exc))
        return render_template("admin/edit_mailbox.html", **page), 403
    except mailbox_rules.MailboxConflict as exc:
        # Show the mailbox as it is now, so nothing the other admin did is overwritten unseen.
        mailbox = mailbox_queries.get_mailbox(get_db(), mailbox["email"])
        _fill_mailbox_form(form, mailbox)
        form.form_errors.append(str(exc))
        return render_template("admin/edit_mailbox.html", **{**page, "mailbox": mailbox}), 409
    except mailbox_rules.MailboxRuleError as exc:
        form.quota.errors = list(form.quota.errors) + [str(exc)]
        return render_template("admin/edit_mailbox.html", **page), 409
    flash(_("%(address)s: saved.", address=mailbox["email"]) if changes else _("Nothing changed."),
          "success" if changes else "info")
    return redirect(url_for("admin.edit_mailbox", name=domain["name"], address=mailbox["email"]))


def _fill_mailbox_form(form, mailbox: dict) -> None:
    form.quota.data = quota.format_size(mailbox["quota_bytes"]) if mailbox["quota_bytes"] else ""
    form.active.data = mailbox["active"]
    form.display_name.data = mailbox["display_name"]
    form.version.data = mailbox_rules.version_of(mailbox)


def _refuse_unless_manageable(mailbox: dict) -> None:
    """403 for a mailbox the admin may not manage (asked again by the rule, under its lock)."""
    conn = get_db()
    actor = _actor()
    if access.refusal_to_manage_mailbox(actor, access.powers_of(conn, actor), mailbox,
                                        role_queries.roles_of(conn, mailbox["id"])):
        abort(403)


@bp.route("/domains/<name>/bulk", methods=["GET", "POST"])
@admin_required
def bulk_mailboxes(name: str):
    """Review, then apply, one change to the mailboxes selected in the list: all of them or none."""
    domain = _domain_or_404(name)
    if request.method == "GET":
        # The review answers a POST; switching language or colour there comes back here: to the list.
        return redirect(url_for("admin.mailboxes", name=domain["name"]))
    form = BulkSelectForm()
    addresses = [a.strip().lower() for a in request.form.getlist("mailbox") if a.strip()]
    page = {"domain": domain, "form": form, "addresses": addresses, "outcomes": [],
            "grace_days": int(current_app.config["MAILBOX_PURGE_GRACE_DAYS"])}
    if not form.validate_on_submit():
        return render_template("admin/bulk_mailboxes.html", **page), 400
    try:
        change = bulk_rules.BulkChange(form.action.data,
                                       quota.parse_size(form.quota.data) if form.action.data == "limit" else 0)
    except quota.InvalidSize as exc:
        form.quota.errors = list(form.quota.errors) + [str(exc)]
        return render_template("admin/bulk_mailboxes.html", **page), 400
    arguments = {"domain_id": domain["id"], "addresses": addresses, "change": change,
                 "mail_root": current_app.config["MAIL_ROOT"], "grace_days": page["grace_days"],
                 "delimiter": current_app.config["RECIPIENT_DELIMITER"]}
    try:
        if form.confirmed.data != "yes":
            page["outcomes"] = bulk_rules.change_mailboxes(get_db(), _actor(), dry_run=True, **arguments)
            return render_template("admin/bulk_mailboxes.html", **page)
        outcomes = bulk_rules.change_mailboxes(get_db(), _actor(), **arguments)
    except bulk_rules.BulkRefused as exc:
        form.form_errors.append(str(exc))
        page["outcomes"] = exc.outcomes
        return render_template("admin/bulk_mailboxes.html", **page), 409
    except mailbox_rules.MailboxRuleError as exc:
        form.form_errors.append(str(exc))
        return render_template("admin/bulk_mailboxes.html", **page), 400
    changed = sum(1 for o in outcomes if o.changes)
    flash(_("Changed mailboxes: %(count)s.", count=changed), "success")
    return redirect(url_for("admin.mailboxes", name=domain["name"]))


@bp.route("/domains/<name>/mailboxes/<address>/delete", methods=["GET", "POST"])
@admin_required
def delete_mailbox(name: str, address: str):
    """Confirm, then delete a mailbox; its mail is kept for the grace period."""
    domain = _domain_or_404(name)
    mailbox = _mailbox_or_404(domain, address)
    _refuse_unless_manageable(mailbox)
    if mailbox["email"] == current_user.email:
        abort(403)  # nobody deletes the mailbox they are signed in with
    form = DeleteMailboxForm()
    # Only this domain's aliases are named: other domains' are their admins' business (they are told in their log).
    pointing = alias_queries.sources_delivering_to(get_db(), mailbox["email"], domain["id"])
    page = {"domain": domain, "mailbox": mailbox, "form": form, "pointing": pointing,
            "grace_days": int(current_app.config["MAILBOX_PURGE_GRACE_DAYS"])}
    if not form.validate_on_submit():
        return render_template("admin/delete_mailbox.html", **page), 400 if form.errors else 200
    if form.confirm.data.strip().lower() != mailbox["email"]:
        form.confirm.errors = list(form.confirm.errors) + [_("Type %(address)s exactly.", address=mailbox["email"])]
        return render_template("admin/delete_mailbox.html", **page), 400
    try:
        result = mailbox_rules.delete_mailbox(
            get_db(), _actor(), mailbox=mailbox, mail_root=current_app.config["MAIL_ROOT"],
            grace_days=page["grace_days"],
        )
    except mailbox_rules.MailboxRefused as exc:
        abort(403, str(exc))
    except mailbox_rules.MailboxRuleError as exc:
        form.form_errors.append(str(exc))
        return render_template("admin/delete_mailbox.html", **page), 409
    purge_after = result["purge_after"].strftime("%Y-%m-%d")
    if result["removed_aliases"]:
        message = _("%(address)s is deleted. Its mail is kept until %(date)s. "
                    "These aliases delivered only to it and are gone: %(aliases)s.",
                    address=mailbox["email"], date=purge_after, aliases=", ".join(result["removed_aliases"]))
    else:
        message = _("%(address)s is deleted. Its mail is kept until %(date)s.",
                    address=mailbox["email"], date=purge_after)
    flash(message, "success")
    return redirect(url_for("admin.mailboxes", name=domain["name"]))


def _domain_settings(form) -> dict:
    """Read the form's settings; raise DomainRuleError with a message."""
    return domain_rules.settings_from(
        default_quota=form.default_quota.data, max_quota=form.max_quota.data, active=bool(form.active.data),
        max_mailboxes=form.max_mailboxes.data or 0, max_aliases=form.max_aliases.data or 0,
        allow_personal_aliases=bool(form.allow_personal_aliases.data),
        max_personal_aliases=form.max_personal_aliases.data or 0,
    )


def _fill_domain_form(form, domain: dict) -> None:
    form.active.data = domain["active"]
    form.max_mailboxes.data = domain["max_mailboxes"]
    form.max_aliases.data = domain["max_aliases"]
    form.default_quota.data = _size_text(domain["default_quota_bytes"])
    form.max_quota.data = _size_text(domain["max_quota_bytes"])
    form.allow_personal_aliases.data = domain["allow_personal_aliases"]
    form.max_personal_aliases.data = domain["max_personal_aliases"]
    form.version.data = domain_rules.version_of(domain)
    for field in form:
        field.raw_data = None  # after a refused POST, show these values, not the ones typed


def _size_text(size: int) -> str:
    return quota.format_size(size) if size else ""


def _actor() -> Actor:
    return Actor.of_user(current_user, client_address())


@bp.route("/domains/new", methods=["GET", "POST"])
@superadmin_required
def new_domain():
    """Create a domain (superadmins only)."""
    form = DomainForm()
    if not form.validate_on_submit():
        return render_template("admin/domain_form.html", form=form, domain=None), 400 if form.errors else 200
    try:
        settings = _domain_settings(form)
    except domain_rules.DomainRuleError as exc:
        form.max_quota.errors = list(form.max_quota.errors) + [str(exc)]
        return render_template("admin/domain_form.html", form=form, domain=None), 400
    try:
        name = domain_rules.create_domain(get_db(), _actor(), name=form.name.data or "", settings=settings)
    except domain_rules.DomainRuleError as exc:
        form.name.errors = list(form.name.errors) + [str(exc)]
        status = 409 if isinstance(exc, domain_rules.DomainExists) else 400
        return render_template("admin/domain_form.html", form=form, domain=None), status
    flash(_("%(domain)s is created. Add its first mailbox.", domain=name), "success")
    return redirect(url_for("admin.mailboxes", name=name))


@bp.route("/domains/<name>/settings", methods=["GET", "POST"])
@admin_required
def domain_settings(name: str):
    """Show a domain's settings; only superadmins change its limits."""
    domain = domain_queries.get_domain(get_db(), _domain_or_404(name)["id"])
    form = DomainForm(obj=None)
    if request.method == "GET":
        _fill_domain_form(form, domain)
    if request.method == "GET" or not current_user.is_superadmin:
        if request.method == "POST":
            abort(403)  # domain admins see the limits; setting them is the superadmin's
        return _domain_page(form, domain)
    if not form.validate_on_submit():
        return _domain_page(form, domain, status=400)
    try:
        settings = _domain_settings(form)
    except domain_rules.DomainRuleError as exc:
        form.max_quota.errors = list(form.max_quota.errors) + [str(exc)]
        return _domain_page(form, domain, status=400)
    try:
        domain_rules.update_domain(get_db(), _actor(), domain=domain, settings=settings,
                                   delimiter=current_app.config["RECIPIENT_DELIMITER"],
                                   expected_version=form.version.data or None)
    except domain_rules.DomainConflict as exc:
        domain = domain_queries.get_domain(get_db(), domain["id"])
        _fill_domain_form(form, domain)
        form.form_errors.append(str(exc))
        return _domain_page(form, domain, status=409)
    except domain_rules.DomainRuleError as exc:
        form.form_errors.append(str(exc))
        return _domain_page(form, domain, status=409)
    flash(_("%(domain)s: saved.", domain=domain["name"]), "success")
    return redirect(url_for("admin.domain_settings", name=domain["name"]))


def _domain_page(form, domain, status=200, alias_domain_form=None):
    """A domain's settings page, with its alias domains (and, for superadmins, the form to link one)."""
    return render_template("admin/domain_form.html", form=form, domain=domain,
                           alias_domains=alias_domain_rules.alias_domains_of(get_db(), domain["id"]),
                           alias_domain_form=alias_domain_form or AliasDomainForm(formdata=None),
                           state_form=AliasDomainStateForm(formdata=None)), status


@bp.post("/domains/<name>/app-passwords")
@admin_required
def require_app_passwords(name: str):
    """Whether every mail client of the domain must use an app password (the main password then works only in
    the portal)."""
    domain = _domain_or_404(name)
    if not DeleteForm().validate_on_submit():
        abort(400)
    required = request.form.get("required") == "1"
    try:
        changed = domain_rules.require_app_passwords(get_db(), _actor(), domain["id"], required)
    except domain_rules.AppPasswordSwitchRefused as exc:
        abort(403, str(exc))
    if changed:
        flash(_("%(domain)s: mail clients must now use app passwords.", domain=domain["name"]) if required
              else _("%(domain)s: mail clients may use main passwords again, where their users allow it.",
                     domain=domain["name"]), "success")
    return redirect(url_for("admin.domain_settings", name=domain["name"]))


@bp.post("/domains/<name>/alias-domains")
@superadmin_required
def link_alias_domain(name: str):
    """Link an alias domain to this domain: x@alias then delivers where x@domain does."""
    domain = domain_queries.get_domain(get_db(), _domain_or_404(name)["id"])
    form = AliasDomainForm()
    settings_form = DomainForm(formdata=None)
    _fill_domain_form(settings_form, domain)
    if not form.validate_on_submit():
        return _domain_page(settings_form, domain, 400, form)
    try:
        linked = alias_domain_rules.create_alias_domain(get_db(), _actor(), name=form.name.data or "",
                                                        target=domain["name"],
                                                        delimiter=current_app.config["RECIPIENT_DELIMITER"])
    except (alias_domain_rules.AliasDomainError, domain_rules.DomainRuleError) as exc:
        form.name.errors = list(form.name.errors) + [str(exc)]
        return _domain_page(settings_form, domain, 409, form)
    flash(_("%(alias_domain)s now delivers to the addresses of %(domain)s.", alias_domain=linked,
            domain=domain["name"]), "success")
    return redirect(url_for("admin.domain_settings", name=domain["name"]))


def _linked_or_404(domain: dict, alias_domain: str) -> dict:
    row = alias_domain_queries.get_by_name(get_db(), alias_domain.lower())
    if row is None or row["target_domain_id"] != domain["id"]:
        abort(404)
    return row


@bp.post("/domains/<name>/alias-domains/<alias_domain>/state")
@superadmin_required
def alias_domain_state(name: str, alias_domain: str):
    """Enable or disable an alias domain; mail to it is refused at once while disabled."""
    domain = _domain_or_404(name)
    row = _linked_or_404(domain, alias_domain)
    form = AliasDomainStateForm()
    if not form.validate_on_submit() or form.active.data not in ("0", "1"):
        abort(400)
    try:
        alias_domain_rules.set_alias_domain_active(get_db(), _actor(), name=row["name"],
                                                   active=form.active.data == "1",
                                                   delimiter=current_app.config["RECIPIENT_DELIMITER"])
    except alias_domain_rules.AliasDomainNotFound:
        abort(404)
    except alias_domain_rules.AliasDomainError as exc:
        flash(str(exc), "danger")
        return redirect(url_for("admin.domain_settings", name=domain["name"]))
    flash(_("%(alias_domain)s is enabled.", alias_domain=row["name"]) if form.active.data == "1"
          else _("%(alias_domain)s is disabled: mail to it is refused.", alias_domain=row["name"]), "success")
    return redirect(url_for("admin.domain_settings", name=domain["name"]))


@bp.route("/domains/<name>/alias-domains/<alias_domain>/delete", methods=["GET", "POST"])
@superadmin_required
def unlink_alias_domain(name: str, alias_domain: str):
    """Show what goes, then unlink an alias domain with the aliases written on it."""
    domain = _domain_or_404(name)
    row = _linked_or_404(domain, alias_domain)
    form = DeleteForm()
    if not form.validate_on_submit():
        explicit = alias_queries.sources_on_domain(get_db(), domain["id"], row["name"])
        return render_template("admin/delete_alias_domain.html", domain=domain, alias_domain=row,
                               explicit=explicit, form=form), 400 if form.errors else 200
    try:
        removed = alias_domain_rules.delete_alias_domain(get_db(), _actor(), name=row["name"])
    except alias_domain_rules.AliasDomainNotFound:
        abort(404)
    flash(_("%(alias_domain)s is unlinked; mail to it is refused.", alias_domain=row["name"])
          + (" " + _("These aliases went with it: %(aliases)s.", aliases=", ".join(removed)) if removed else ""),
          "success")
    return redirect(url_for("admin.domain_settings", name=domain["name"]))


def _reserved() -> list[str]:
    return list(current_app.config["RESERVED_LOCAL_PARTS"])


def _alias_page(domain, form, source=None, status=200, send_as_form=None):
    holders = send_as_rules.holders_of(get_db(), source) if source else []
    return render_template("admin/alias_form.html", domain=domain, form=form, source=source, holders=holders,
                           send_as_form=send_as_form or SendAsForm(formdata=None),
                           revoke_form=DeleteForm(formdata=None)), status


@bp.post("/domains/<name>/aliases/<alias:source>/send-as")
@admin_required
def grant_send_as(name: str, source: str):
    """Let a mailbox of the domain send as this alias on the submission service."""
    domain = _domain_or_404(name)
    source = source.lower()
    if source.startswith("@") or not alias_rules.editable(get_db(), _actor(), domain, source, _reserved()):
        abort(404)
    form = SendAsForm()
    alias_form = AliasForm(formdata=None)
    alias_form.destinations.data = "\n".join(alias_queries.destinations(get_db(), source))
    alias_form.version.data = alias_rules.version_of(alias_queries.destinations(get_db(), source))
    if not form.validate_on_submit():
        return _alias_page(domain, alias_form, source, 400, form)
    try:
        address = canonical_address(form.mailbox.data or "")
    except InvalidAddress as exc:
        form.mailbox.errors = [str(exc)]
        return _alias_page(domain, alias_form, source, 400, form)
    mailbox = mailbox_queries.get_mailbox(get_db(), address)
    scope = _scope()
    if mailbox is None or (scope is not None and mailbox["domain_id"] not in scope):
        # Out of scope looks the same as missing: no hint about other domains' mailboxes.
        form.mailbox.errors = [_("%(address)s is not a mailbox.", address=address)]
        return _alias_page(domain, alias_form, source, 400, form)
    try:
        send_as_rules.grant_send_as(get_db(), _actor(), mailbox=mailbox, address=source,
                                    delimiter=current_app.config["RECIPIENT_DELIMITER"])
    except send_as_rules.SendAsRefused as exc:
        form.mailbox.errors = [str(exc)]
        return _alias_page(domain, alias_form, source, 403, form)
    except send_as_rules.SendAsError as exc:
        form.mailbox.errors = [str(exc)]
        return _alias_page(domain, alias_form, source, 409, form)
    flash(_("%(mailbox)s may now send as %(address)s.", mailbox=mailbox["email"], address=source), "success")
    return redirect(url_for("admin.edit_alias", name=domain["name"], source=source))


@bp.post("/domains/<name>/send-as/<int:grant_id>/revoke")
@admin_required
def revoke_send_as(name: str, grant_id: int):
    """Take a send-as right back; the alias's page shows who holds the rest."""
    domain = _domain_or_404(name)
    if not DeleteForm().validate_on_submit():
        abort(400)
    try:
        grant = send_as_rules.revoke_send_as(get_db(), _actor(), grant_id=grant_id, domain_id=domain["id"])
    except send_as_rules.SendAsRefused:
        abort(403)
    except send_as_rules.SendAsError:
        abort(404)
    flash(_("%(mailbox)s may no longer send as %(address)s.", mailbox=grant["email"], address=grant["address"]),
          "success")
    if alias_rules.editable(get_db(), _actor(), domain, grant["address"], _reserved()):
        return redirect(url_for("admin.edit_alias", name=domain["name"], source=grant["address"]))
    return redirect(url_for("admin.aliases", name=domain["name"]))


@bp.route("/domains/<name>/aliases/new", methods=["GET", "POST"])
@admin_required
def new_alias(name: str):
    """Create an alias or the catch-all of a domain."""
    domain = _domain_or_404(name)
    form = AliasForm()
    choices = [domain["name"], *alias_domain_queries.names_for(get_db(), domain["name"])]
    form.on_domain.choices = [(choice, "@" + choice) for choice in choices]
    if not form.validate_on_submit():
        return _alias_page(domain, form, status=400 if form.errors else 200)
    on_domain = form.on_domain.data or domain["name"]
    if on_domain not in choices:
        form.on_domain.errors = [_("Choose %(domain)s or one of its alias domains.", domain=domain["name"])]
        return _alias_page(domain, form, status=400)
    if form.catch_all.data:
        source = f"@{on_domain}"
    else:
        try:
            source = canonical_address(f"{(form.local_part.data or '').strip(' ')}@{on_domain}")
        except InvalidAddress:
            form.local_part.errors = list(form.local_part.errors) + [
                _("Use letters, digits and . _ - only, for example sales.")]
            return _alias_page(domain, form, status=400)
    return _save_alias(domain, form, source, "alias.create")


def _save_alias(domain, form, source, action):
    destinations, problems = addressing.parse_destinations((form.destinations.data or "").splitlines())
    if problems:
        form.destinations.errors = list(form.destinations.errors) + problems
        return _alias_page(domain, form, source if action != "alias.create" else None, 400)
    try:
        alias_rules.save_alias(get_db(), _actor(), domain=domain, source=source, destinations=destinations,
                               create=action == "alias.create", reserved=_reserved(),
                               delimiter=current_app.config["RECIPIENT_DELIMITER"],
                               expected_version=form.version.data or None)
    except alias_rules.AliasNotFound:
        abort(404)
    except alias_rules.AliasRefused as exc:
        form.destinations.errors = list(form.destinations.errors) + exc.problems
        return _alias_page(domain, form, source if action != "alias.create" else None, 403)
    except addressing.AliasRuleError as exc:
        form.destinations.errors = list(form.destinations.errors) + exc.problems
        return _alias_page(domain, form, source if action != "alias.create" else None, 409)
    flash(_("%(address)s delivers to %(destinations)s.", address=source, destinations=", ".join(destinations)),
          "success")
    return redirect(url_for("admin.aliases", name=domain["name"]))


# An alias address may hold a "/" (RFC 5322 allows it): the alias converter takes it (portal/converters.py).
@bp.route("/domains/<name>/aliases/<alias:source>", methods=["GET", "POST"])
@admin_required
def edit_alias(name: str, source: str):
    """Change where an alias delivers."""
    domain = _domain_or_404(name)
    source = source.lower()
    if not alias_rules.editable(get_db(), _actor(), domain, source, _reserved()):
        # Missing, another domain's, a mailbox's forwarding or a personal address (set on its owner's page),
        # or reserved for a superadmin.
        abort(404)
    form = AliasForm()
    if request.method == "GET":
        current = alias_queries.destinations(get_db(), source)
        form.destinations.data = "\n".join(current)
        form.version.data = alias_rules.version_of(current)
    if not form.validate_on_submit():
        return _alias_page(domain, form, source, 400 if form.errors else 200)
    return _save_alias(domain, form, source, "alias.update")


@bp.route("/domains/<name>/aliases/<alias:source>/delete", methods=["GET", "POST"])
@admin_required
def delete_alias(name: str, source: str):
    """Show what goes, then remove an alias and all its rows."""
    domain = _domain_or_404(name)
    form = DeleteForm()
    if request.method == "GET":
        if not alias_rules.editable(get_db(), _actor(), domain, source.lower(), _reserved()):
            abort(404)
        return render_template("admin/delete_alias.html", domain=domain, source=source.lower(), form=form,
                               destinations=alias_queries.destinations(get_db(), source.lower()))
    if not form.validate_on_submit():
        abort(400)
    try:
        alias_rules.delete_alias(get_db(), _actor(), domain=domain, source=source.lower(), reserved=_reserved())
    except alias_rules.AliasNotFound:
        abort(404)
    except alias_rules.AliasRefused as exc:
        abort(403, exc.problems[0])
    flash(_("%(address)s no longer exists.", address=source.lower()), "success")
    return redirect(url_for("admin.aliases", name=domain["name"]))


@bp.route("/domains/<name>/delete", methods=["GET", "POST"])
@superadmin_required
def delete_domain(name: str):
    """Show what goes, then delete a domain (its mail kept for the grace period)."""
    domain = domain_queries.get_domain(get_db(), _domain_or_404(name)["id"])
    if domain["name"] == current_user.domain:
        abort(403)  # not the domain of the mailbox one is signed in with
    form = DeleteDomainForm()
    grace = int(current_app.config["MAILBOX_PURGE_GRACE_DAYS"])
    page = {"domain": domain, "form": form, "grace_days": grace}
    if not form.validate_on_submit():
        return render_template("admin/delete_domain.html", **page), 400 if form.errors else 200
    if form.confirm.data.strip().lower().rstrip(".") != domain["name"]:
        form.confirm.errors = list(form.confirm.errors) + [_("Type %(domain)s exactly.", domain=domain["name"])]
        return render_template("admin/delete_domain.html", **page), 400
    try:
        summary = mailbox_rules.delete_domain(
            get_db(), _actor(), domain=domain, mail_root=current_app.config["MAIL_ROOT"], grace_days=grace,
        )
    except mailbox_rules.MailboxRuleError as exc:
        form.form_errors.append(str(exc))
        return render_template("admin/delete_domain.html", **page), 409
    flash(_("%(domain)s is deleted with %(count)s mailboxes; their mail is kept for %(days)s days.",
            domain=domain["name"], count=summary["mailboxes"], days=grace), "success")
    return redirect(url_for("admin.domains"))


def _roles_page(form, status=None):
    html, list_status = render_list("admin/roles.html", lambda s, a, o: listing.roles(get_db(), s, a, o),
                                     listing.ROLE_SORTS, grant_form=form, revoke_form=DeleteForm(),
                                     labels=role_rules.ROLE_LABELS)
    return html, status or list_status


@bp.get("/roles")
@superadmin_required
def roles():
    """Everyone who holds a role, a page at a time, and the form to grant one (superadmins only)."""
    return _roles_page(GrantRoleForm(formdata=None))


@bp.post("/roles")
@superadmin_required
def grant_role():
    """Give a mailbox a role."""
    form = GrantRoleForm()
    if not form.validate_on_submit():
        return _roles_page(form, 400)
    try:
        granted, mailbox, role_name, domain_row = role_rules.grant(
            get_db(), _actor(), address=form.address.data, role=form.role.data, domain=form.domain.data,
        )
    except role_rules.RoleError as exc:
        form.form_errors.append(str(exc))
        return _roles_page(form, 400)
    role = role_rules.ROLE_LABELS[role_name]
    if granted and domain_row:
        flash(_("%(address)s is now %(role)s of %(domain)s.", address=mailbox["email"], role=role,
                domain=domain_row["name"]), "success")
    elif granted:
        flash(_("%(address)s is now %(role)s.", address=mailbox["email"], role=role), "success")
    elif domain_row:
        flash(_("%(address)s was already %(role)s of %(domain)s.", address=mailbox["email"], role=role,
                domain=domain_row["name"]), "info")
    else:
        flash(_("%(address)s was already %(role)s.", address=mailbox["email"], role=role), "info")
    return redirect(url_for("admin.roles"))


@bp.post("/roles/<int:role_id>/revoke")
@superadmin_required
def revoke_role(role_id: int):
    """Take a role back (never the last superadmin's)."""
    if not DeleteForm().validate_on_submit():
        abort(400)
    held = role_queries.get_role(get_db(), role_id)
    if held is None:
        abort(404)
    try:
        mailbox, role_name, domain_row = role_rules.revoke(
            get_db(), _actor(), address=held["email"], role=held["role"], domain=held["domain"],
        )
    except role_rules.RoleError as exc:
        flash(str(exc), "error")
        return redirect(url_for("admin.roles"))
    role = role_rules.ROLE_LABELS[role_name]
    if domain_row:
        flash(_("%(address)s is no longer %(role)s of %(domain)s.", address=mailbox["email"], role=role,
                domain=domain_row["name"]), "success")
    else:
        flash(_("%(address)s is no longer %(role)s.", address=mailbox["email"], role=role), "success")
    return redirect(url_for("admin.roles"))


def _audit_scope() -> list[listing.AuditDomain] | None:
    """The domains whose audit rows the admin may read, each from its creation on; None for a superadmin (all rows).

    From its creation: a domain deleted and created again is a new tenant, who does not read the former one's log."""
    if current_user.is_superadmin:
        return None
    conn = get_db()
    domains = [domain_queries.get_domain(conn, r["domain_id"]) for r in current_user.roles
               if r["role"] == "domain_admin"]
    return [listing.AuditDomain(d["name"], d["created_at"]) for d in domains if d]


def _audit_request() -> tuple[AuditFilterForm, listing.AuditFilter | None, listing.Sort]:
    form = AuditFilterForm(request.args)
    if request.args and not form.validate():
        return form, None, listing.AUDIT_SORTS["newest"]
    day = timedelta(days=1)
    filters = listing.AuditFilter(
        actor=(form.actor.data or "").strip().lower() or None,
        target=(form.target.data or "").strip().lower() or None,
        action=form.action.data or None,
        since=datetime.combine(form.since.data, time(), UTC) if form.since.data else None,
        until=datetime.combine(form.until.data, time(), UTC) + day if form.until.data else None,
    )
    return form, filters, listing.AUDIT_SORTS.get(form.sort.data or "", listing.AUDIT_SORTS["newest"])


@bp.get("/audit")
@admin_required
def audit_log():
    """Who changed what: all of it for superadmins, their domains' rows for domain admins."""
    form, filters, sort = _audit_request()
    # Only the form's own fields go into the page's links (never _external, _scheme and the like).
    link_args = {name: request.args[name] for name in AUDIT_FILTER_FIELDS if request.args.get(name)}
    if filters is None:
        return render_template("admin/audit.html", form=form, page=listing.Page([], None), filters=link_args), 400
    try:
        page = listing.audit_entries(get_db(), _audit_scope(), filters, request.args.get("after"), sort)
    except listing.InvalidCursor:
        abort(400)
    return render_template("admin/audit.html", form=form, page=page, filters=link_args)


AUDIT_FILTER_FIELDS = ("actor", "target", "action", "since", "until", "sort")


CSV_BATCH = 1000


def _csv_cell(value) -> str:
    text = "" if value is None else str(value)
    # A cell that a spreadsheet would run as a formula is quoted as text.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@bp.get("/audit.csv")
@admin_required
def audit_csv():
    """The audit rows the page's filters select, all of them, as CSV."""
    form, filters, sort = _audit_request()
    if filters is None:
        abort(400)
    scope = _audit_scope()
    try:
        first = listing.audit_entries(get_db(), scope, filters, request.args.get("after"), sort, limit=CSV_BATCH)
    except listing.InvalidCursor:
        abort(400)

    def rows():
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["at", "actor", "actor_role", "client_addr", "action", "target", "domain", "summary"])
        page = first
        while True:
            for e in page.rows:
                writer.writerow([_csv_cell(v) for v in (
                    e["at"].isoformat(), e["actor"], e["actor_role"], e["client_addr"], e["action"], e["target"],
                    e["domain"], json.dumps(e["summary"], ensure_ascii=False, sort_keys=True))])
            yield out.getvalue()
            out.seek(0)
            out.truncate()
            if page.next_after is None:
                return
            # Keyset batches: memory stays flat however long the log is.
            page = listing.audit_entries(get_db(), scope, filters, page.next_after, sort, limit=CSV_BATCH)

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Response(stream_with_context(rows()), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="audit-{stamp}.csv"'})
