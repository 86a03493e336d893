"""List pages: search, sort and cursor read from the query string, one page fetched and rendered."""

from __future__ import annotations

from flask import abort
from flask import render_template
from flask import request
from wtforms import SelectChoice

from . import quota
from .admin.forms import SearchForm
from .admin.forms import sort_choices
from .queries import listing


def _list_request(sorts: dict[str, listing.Sort], states: dict | None, state_sorts: dict | None):
    """Read a list page's search, sort, state and cursor from the query string;
    (form, search or None, sort, state, cursor)."""
    form = SearchForm(request.args)
    if states:
        form.state.choices = [SelectChoice(name, label) for name, label in states.items()]
    # A state may allow fewer orders (those its index holds): offer only those.
    all_sorts, sorts = sorts, (state_sorts or {}).get(request.args.get("state", ""), sorts)
    form.sort.choices = sort_choices(sorts)
    default = next(iter(sorts.values()))
    if form.sort.data not in sorts and form.sort.data in all_sorts:
        form.sort.data = None  # an order of the full list, kept in the link when the state was chosen
    form.sort.data = form.sort.data or default.name
    if request.args and not form.validate():
        return form, None, default, "", None
    search = listing.Search((form.q.data or "").strip().lower(), form.mode.data or "prefix")
    return form, search, sorts.get(form.sort.data or "", default), form.state.data or "", request.args.get("after")


def render_list(template: str, fetch, sorts: dict[str, listing.Sort], states: dict | None = None,
                state_sorts: dict | None = None, **context):
    """Render ``template`` with one page from ``fetch(search, cursor, sort)`` (with ``states``, the names and
    labels a list can be narrowed to: ``fetch(search, cursor, sort, state)``); 400 for a bad search or cursor.

    ``state_sorts`` maps a state to the orders it allows, where those are fewer."""
    form, search, sort, state, after = _list_request(sorts, states, state_sorts)
    try:
        if search is None:
            page = listing.Page([], None)
        else:
            page = fetch(search, after, sort, state) if states else fetch(search, after, sort)
    except listing.InvalidCursor:
        abort(400)
    status = 200 if search is not None else 400
    return render_template(template, form=form, page=page, sort=sort, state=state, format_size=quota.format_size,
                           usage_percent=quota.usage_percent, **context), status
