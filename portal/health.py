"""``/healthz``: is the database reachable and migrated, and is Dovecot answering?"""

from __future__ import annotations

import logging

import psycopg
from flask import Blueprint
from flask import current_app
from flask import jsonify

from . import imap
from .db import DatabaseUnavailable
from .db import get_db
from .migrate import pending_migrations

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


def _check_database(timeout: float) -> str:
    try:
        conn = get_db(timeout=timeout)
        pending = pending_migrations(conn)
    except (DatabaseUnavailable, psycopg.Error) as exc:
        log.warning("health: database check failed: %s", exc)
        return "unreachable"
    if pending:
        return "not migrated: run 'flask --app app db upgrade'"
    return "ok"


def _check_imap(timeout: float) -> str:
    try:
        imap.check_reachable(current_app.config, timeout)
    except imap.ImapUnavailable as exc:
        log.warning("health: IMAP check failed: %s", exc)
        return "unreachable"
    return "ok"


@bp.get("/healthz")
def healthz():
    """Answer 200 when every part is fine, else 503 naming the part that failed."""
    timeout = float(current_app.config["HEALTH_TIMEOUT"])
    checks = {"database": _check_database(timeout), "imap": _check_imap(timeout)}
    healthy = all(state == "ok" for state in checks.values())
    response = jsonify(status="ok" if healthy else "unavailable", checks=checks)
    response.status_code = 200 if healthy else 503
    response.headers["Cache-Control"] = "no-store"
    return response
