"""Colour modes (Bootstrap 5.3's light and dark, or following the device): the choice is a cookie."""

from __future__ import annotations

from flask import has_request_context
from flask import request

COOKIE = "portal_colour_mode"
# "auto" follows the device's setting (static/colour-mode.js); without scripts it is light.
MODES = ("light", "dark", "auto")


def colour_mode() -> str:
    """The colour mode this request's page is drawn in: the switch's cookie, else following the device."""
    chosen = request.cookies.get(COOKIE) if has_request_context() else None
    return chosen if chosen in MODES else "auto"


def init_app(app) -> None:
    """Give the templates the request's colour mode."""
    app.jinja_env.globals["colour_mode"] = colour_mode
