"""Administration: the domains, mailboxes and aliases in an admin's scope."""

from __future__ import annotations

from flask import Blueprint
from flask import abort
from flask import render_template
from flask import request
from flask_login import current_user

from .. import quota
from ..access import admin_required
from ..db import get_db
from ..queries import domains as domain_queries
from ..queries import listing
from .forms import SearchForm

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


def _search() -> tuple[SearchForm, listing.Search | None, str | None]:
    form = SearchForm(request.args)
    after = request.args.get("after") or None
    if after is not None and (len(after) > 254 or any(ord(ch) < 0x20 for ch in after)):
        abort(400)
    if request.args and not form.validate():
        return form, None, after
    return form, listing.Search((form.q.data or "").strip().lower(), form.mode.data or "prefix"), after


def _render_list(template: str, fetch, **context):
    form, search, after = _search()
    page = fetch(search, after) if search is not None else listing.Page([], None)
    status = 200 if search is not None else 400
    return render_template(template, form=form, page=page, format_size=quota.format_size, **context), status


@bp.get("/")
@admin_required
def index():
    """The admin's roles and the first domains of their scope."""
    page = listing.domains(get_db(), _scope(), listing.Search(), None, limit=10)
    return render_template("admin/index.html", domains=page.rows, more=page.next_after is not None,
                           roles=current_user.roles)


@bp.get("/domains")
@admin_required
def domains():
    """All domains in scope, searchable, a page at a time."""
    return _render_list("admin/domains.html", lambda s, a: listing.domains(get_db(), _scope(), s, a))


@bp.get("/domains/<name>/mailboxes")
@admin_required
def mailboxes(name: str):
    """The mailboxes of a domain with their limit and usage, a page at a time."""
    domain = _domain_or_404(name)
    return _render_list("admin/mailboxes.html", lambda s, a: listing.mailboxes(get_db(), domain["id"], s, a),
                        domain=domain)


@bp.get("/domains/<name>/aliases")
@admin_required
def aliases(name: str):
    """The aliases of a domain with their destinations, a page at a time."""
    domain = _domain_or_404(name)
    return _render_list("admin/aliases.html", lambda s, a: listing.aliases(get_db(), domain["id"], s, a),
                        domain=domain)

