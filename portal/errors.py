"""Error pages: the same look for every status, never a stack trace."""

from __future__ import annotations

import logging

from flask import g
from flask import has_request_context
from flask import render_template
from flask import request
from psycopg import OperationalError
from psycopg_pool import PoolTimeout
from werkzeug.exceptions import HTTPException

from .db import DatabaseUnavailable
from .i18n import _
from .i18n import _l
from .imap import ImapUnavailable

log = logging.getLogger(__name__)

_MESSAGES = {
    400: (_l("Bad request"), _l("The request could not be understood. Reload the page and try again.")),
    403: (_l("Forbidden"), _l("You are not allowed to do this.")),
    404: (_l("Not found"), _l("There is nothing at this address.")),
    405: (_l("Method not allowed"), _l("This page cannot be used that way.")),
    429: (_l("Too many attempts"), _l("Please wait a moment before trying again.")),
    500: (_l("Something went wrong"), _l("The portal hit an unexpected error. It has been logged.")),
    503: (
        _l("Service unavailable"),
        _l("The mail server is not answering right now. Please try again in a few minutes."),
    ),
}
_UNKNOWN = (_l("Error"), _l("The request failed."))


def _for_api() -> bool:
    return has_request_context() and request.path.startswith("/api/")


def render_error(code: int, message: str | None = None):
    """Render the error page for an HTTP status (under /api/, the problem+json answer)."""
    title, default_message = _MESSAGES.get(code, _UNKNOWN)
    if _for_api():
        from .api.problems import problem_response

        return problem_response(code, str(message or default_message)), code
    # Translated now, in the request's language; plain text for the template.
    return render_template("error.html", code=code, title=str(title), message=str(message or default_message)), code


def _http_error(exc: HTTPException):
    if exc.code is None or exc.code < 400:
        return exc
    # abort(403, "why") gives its own message; werkzeug's stock texts are replaced by ours.
    custom = exc.description if exc.description != type(exc).description else None
    if _for_api():
        from .api import api_http_error

        return api_http_error(exc)
    body, code = render_error(exc.code, custom)
    # Headers the status needs (Allow with a 405, say), without werkzeug's own page type.
    return body, code, [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]


def _database_unavailable(exc: Exception):
    log.error("database unavailable: %s", exc)
    # The page layout asks who is signed in; that would need the database again.
    from .sessions import login_manager

    if not _for_api():
        g._login_user = login_manager.anonymous_user()
    return render_error(503, _("The mail database is not answering right now. Please try again in a few minutes."))


def _imap_unavailable(exc: Exception):
    log.error("IMAP server unavailable: %s", exc)
    return render_error(503)


def _unexpected(exc: Exception):
    log.exception("unhandled error")
    return render_error(500)


def init_app(app) -> None:
    """Register the error handlers."""
    app.register_error_handler(HTTPException, _http_error)
    for exc_class in (DatabaseUnavailable, PoolTimeout, OperationalError):
        app.register_error_handler(exc_class, _database_unavailable)
    app.register_error_handler(ImapUnavailable, _imap_unavailable)
    app.register_error_handler(Exception, _unexpected)
