"""RFC 9457 problem details: every API error, in the request's language (Accept-Language)."""

from __future__ import annotations

from flask import jsonify

from ..i18n import _l

MEDIA_TYPE = "application/problem+json"

_TITLES = {
    400: _l("Bad request"), 401: _l("Unauthorized"), 403: _l("Forbidden"), 404: _l("Not found"),
    411: _l("Length required"),
    405: _l("Method not allowed"), 409: _l("Conflict"), 413: _l("Content too large"),
    415: _l("Unsupported media type"), 422: _l("Unprocessable content"), 429: _l("Too many requests"),
    500: _l("Internal error"), 503: _l("Service unavailable"),
}


class ApiProblem(Exception):
    """An API error: its status, a message for people (translated), and optional per-field errors."""

    def __init__(self, status: int, detail: str, *, errors: dict[str, list[str]] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}


def problem_response(status: int, detail: str, errors: dict[str, list[str]] | None = None,
                     headers: dict[str, str] | None = None):
    """The problem+json response for ``status`` with ``detail``."""
    body = {"type": "about:blank", "title": str(_TITLES.get(status, _l("Error"))), "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    response = jsonify(body)
    response.status_code = status
    response.mimetype = MEDIA_TYPE
    response.headers.update(headers or {})
    return response


def from_exception(exc: ApiProblem):
    """The response for a raised ApiProblem."""
    return problem_response(exc.status, exc.detail, exc.errors, exc.headers)
