"""The mail portal: self-service and administration for Postfix + Dovecot virtual users."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from flask import Response
from flask import current_app
from flask import request
from flask_bootstrap import Bootstrap5
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from . import appearance
from . import auditlog
from . import db
from . import errors
from . import i18n
from . import logs
from . import notices
from . import sessions
from . import signin
from .rules.roles import role_label
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
        SESSION_COOKIE_NAME="portal_session",
        SESSION_COOKIE_SECURE=bool(app.config["COOKIE_SECURE"]) and not (app.debug or app.config.get("TESTING")),
    )

    proxies = int(app.config["TRUSTED_PROXY_COUNT"])
    if proxies:
        # Only then is X-Forwarded-For believed; otherwise a spoofed header changes nothing.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)

    logs.init_app(app)
    i18n.init_app(app)
    appearance.init_app(app)
    # Bootstrap's files come from the Bootstrap-Flask package, not a CDN: portals often run without internet.
    app.config.setdefault("BOOTSTRAP_SERVE_LOCAL", True)
    Bootstrap5(app)
    db.init_app(app)
    signin.init_app(app)
    csrf.init_app(app)
    sessions.init_app(app)
    errors.init_app(app)
    notices.init_app(app)
    _register_blueprints(app)
    _register_commands(app)
    app.add_template_filter(auditlog.action_label, "action_label")
    app.add_template_filter(role_label, "role_label")
    app.add_template_filter(auditlog.summary_text, "audit_summary")
    app.add_url_rule("/favicon.ico", "favicon", _favicon)
    app.after_request(_no_store)
    app.after_request(_security_headers)
    app.after_request(_relative_redirects)
    return app


# No inline script or style anywhere in the templates, so the policy can forbid both.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                           "base-uri 'none'")


def _security_headers(response):
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    return response


def _relative_redirects(response):
    # Werkzeug's own redirects (a missing trailing slash) name the site the Host header
    # gave; a path alone keeps the browser on the site it asked, whatever that header said.
    location = response.headers.get("Location", "")
    if location.startswith(request.host_url):
        response.headers["Location"] = "/" + location[len(request.host_url):]
    return response


def _favicon():
    # Browsers ask for /favicon.ico whatever the page declares (JSON, PDF, an error page):
    # answer it with the icon the pages link to, not with a 404 in the log.
    # Read whole (it is tiny) rather than streamed, so no response holds a file open.
    icon = Path(current_app.static_folder, "favicon.svg").read_bytes()
    return Response(icon, mimetype="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"})


def _no_store(response):
    # Every page is personal or carries a CSRF token: none may stay in shared or
    # back-button caches. Static files keep their caching.
    if request.endpoint not in ("static", "bootstrap.static", "favicon"):
        response.headers["Cache-Control"] = "no-store"
    return response


def _register_blueprints(app: Flask) -> None:
    from .account import bp as account_bp
    from .admin import bp as admin_bp
    from .api import bp as api_bp
    from .auth import bp as auth_bp
    from .converters import AliasAddressConverter
    from .health import bp as health_bp
    from .helpdesk import bp as helpdesk_bp

    app.url_map.converters["alias"] = AliasAddressConverter  # before the routes that use it
    app.register_blueprint(auth_bp)
    app.register_blueprint(account_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(helpdesk_bp)
    app.register_blueprint(health_bp)
    # Tokens, not cookies, authenticate the API: there is no ambient credential for a forged request to use.
    csrf.exempt(api_bp)
    app.register_blueprint(api_bp)


def _register_commands(app: Flask) -> None:
    from .cli import register

    register(app)
