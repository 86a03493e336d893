"""The mail portal: self-service and administration for Postfix + Dovecot virtual users."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from flask import redirect
from flask import url_for
from flask_wtf.csrf import CSRFProtect

from . import db
from . import errors
from .settings import layered_config
from .settings import validate

# The user's layout keeps templates/ and static/ at the top of the repository.
_ROOT = Path(__file__).resolve().parent.parent

csrf = CSRFProtect()


def create_app(test_config: dict | None = None) -> Flask:
    """Build the portal: load and check config, then register extensions and blueprints."""
    app = Flask(
        __name__,
        template_folder=str(_ROOT / "templates"),
        static_folder=str(_ROOT / "static"),
    )
    app.config.update(layered_config(test_config=test_config))
    validate(app.config, debug=app.debug, testing=bool(app.config.get("TESTING")))
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=bool(app.config["COOKIE_SECURE"]) and not (app.debug or app.config.get("TESTING")),
    )

    db.init_app(app)
    csrf.init_app(app)
    errors.init_app(app)
    _register_blueprints(app)
    _register_commands(app)
    return app


def _register_blueprints(app: Flask) -> None:
    from .auth import bp as auth_bp
    from .health import bp as health_bp

    app.register_blueprint(auth_bp)
    app.register_blueprint(health_bp)

    @app.get("/")
    def index():
        return redirect(url_for("auth.login"))


def _register_commands(app: Flask) -> None:
    from .cli import db_cli

    app.cli.add_command(db_cli)
