"""Structured logs: one line per event, with the request id, the signed-in user and the client address.

Every request gets an id (the proxy's X-Request-ID when it looks like one, so a
line in nginx's log and one here can be matched; otherwise a new one), sent
back in the X-Request-ID header and put on every line logged while it runs.
One line per request records method, path (never the query string, which may
hold search terms), status and duration. Nothing here reads form data, so no
password reaches a log line.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from datetime import UTC
from datetime import datetime

from flask import g
from flask import has_request_context
from flask import request

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
_HANDLER_NAME = "mail-portal"
access_log = logging.getLogger("portal.access")


class RequestContext(logging.Filter):
    """Adds request_id, user and client to every record made inside a request (and "-" outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id, record.user, record.client = "-", "-", "-"
        if has_request_context():
            record.request_id = getattr(g, "request_id", "-")
            record.client = request.remote_addr or "-"
            user = g.get("_login_user")
            record.user = getattr(user, "email", None) or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "user": getattr(record, "user", "-"),
            "client": getattr(record, "client", "-"),
        }
        for key in ("method", "path", "status", "duration_ms"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s %(user)s %(client)s] %(message)s"


class TextFormatter(logging.Formatter):
    """One line per event for reading by eye: line breaks and other control characters in a message
    (a path may hold %0a) are shown escaped, so nobody can forge a line. A traceback follows on its own lines."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        safe = logging.makeLogRecord({**record.__dict__, "args": None,
                                      "msg": "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in message)})
        return super().format(safe)


def configure(level: str, fmt: str) -> None:
    """Send the portal's logs to standard error in the chosen format (once per process)."""
    root = logging.getLogger("portal")
    root.setLevel(level.upper())
    handler = next((h for h in root.handlers if h.get_name() == _HANDLER_NAME), None)
    if handler is None:
        handler = logging.StreamHandler()
        handler.set_name(_HANDLER_NAME)
        handler.addFilter(RequestContext())
        root.addHandler(handler)
        root.propagate = False  # gunicorn or a host's logging config would print each line twice
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(TEXT_FORMAT))


def init_app(app) -> None:
    """Configure logging and give every request an id and an access line."""
    if not app.testing:
        configure(str(app.config["LOG_LEVEL"]), str(app.config["LOG_FORMAT"]))

    @app.before_request
    def _start():
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID.fullmatch(incoming) else secrets.token_hex(8)
        g.request_started = time.perf_counter()

    @app.after_request
    def _finish(response):
        response.headers["X-Request-ID"] = g.get("request_id", "-")
        if request.endpoint not in ("static", "bootstrap.static"):
            took = (time.perf_counter() - g.get("request_started", time.perf_counter())) * 1000
            access_log.info("%s %s %s", request.method, request.path, response.status_code, extra={
                "method": request.method, "path": request.path, "status": response.status_code,
                "duration_ms": round(took, 1)})
        return response
