"""List pages: search, sort and cursor read from the query string, one page fetched and rendered."""

from __future__ import annotations

from flask import abort
from flask import render_template
from flask import request

from . import quota
from .admin.forms import SearchForm
from .admin.forms import sort_choices
from .queries import listing


def _list_request(sorts: dict[str, listing.Sort]):
    """Read a list page's search, sort and cursor from the query string; (form, search or None, sort, cursor)."""
    form = SearchForm(request.args)
    form.sort.choices = sort_choices(sorts)
    default = next(iter(sorts.values()))
    form.sort.data = form.sort.data or default.name
    if request.args and not form.validate():
        return form, None, default, None
    search = listing.Search((form.q.data or "").strip().lower(), form.mode.data or "prefix")
    return form, search, sorts.get(form.sort.data or "", default), request.args.get("after")


def render_list(template: str, fetch, sorts: dict[str, listing.Sort], **context):
    """Render ``template`` with one page from ``fetch(search, cursor, sort)``; 400 for a bad search or cursor."""
    form, search, sort, after = _list_request(sorts)
    try:
        page = fetch(search, after, sort) if search is not None else listing.Page([], None)
    except listing.InvalidCursor:
        abort(400)
    status = 200 if search is not None else 400
    return render_template(template, form=form, page=page, sort=sort, format_size=quota.format_size,
                           usage_percent=quota.usage_percent, **context), status
