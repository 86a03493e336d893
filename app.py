"""Entry point for ``flask --app app`` and ``gunicorn app:app``."""

from portal import create_app
from portal.settings import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    # One clear line for the operator (and for journald), not a traceback through flask or gunicorn.
    raise SystemExit(f"mail portal: configuration error: {exc}") from None
