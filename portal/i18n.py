"""Korean and English: the language of each request, the switch, and catalogs compiled at start.

The catalogs live in portal/translations/<lang>/LC_MESSAGES/messages.po (in
the repository); their compiled .mo files are made from them when the app
starts, when missing or older (so an install needs no extra step).
Use ``_`` for text shown to people: in a request it is translated into the
request's language, in a command into the default language, and outside any
app (a worker process hashing passwords) it stays English.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from flask import current_app
from flask import has_app_context
from flask import request
from flask_babel import Babel
from flask_babel import LazyString
from flask_babel import get_locale
from flask_babel import gettext as _gettext
from markupsafe import escape

LANGUAGES = {"ko": "한국어", "en": "English"}
COOKIE = "portal_lang"
TRANSLATIONS = Path(__file__).resolve().parent / "translations"

babel = Babel()


def _(text: str, **variables) -> str:
    """Translate ``text`` (``%(name)s`` placeholders filled from ``variables``) when an app is active."""
    if has_app_context():
        return _gettext(text, **variables)
    return text % variables if variables else text


class _LazyText(LazyString):
    """A lazy translation that Jinja and WTForms escape like any text (Flask-Babel's own is taken as markup)."""

    def __html__(self) -> str:
        return str(escape(str(self)))


def _l(text: str, **variables) -> LazyString:
    """Translate ``text`` when it is shown: for labels and messages defined when a module is imported."""
    return _LazyText(_gettext, text, **variables)


def select_locale() -> str:
    """The language of this request: the switch's cookie, else the browser's Accept-Language, else the default."""
    if not has_app_context() or not _in_request():
        return current_app.config["DEFAULT_LANGUAGE"] if has_app_context() else "en"
    chosen = request.cookies.get(COOKIE)
    if chosen in LANGUAGES:
        return chosen
    default = current_app.config["DEFAULT_LANGUAGE"]
    # The default first: "Accept-Language: *" (any language) then gets it, not whichever comes first here.
    offered = [default, *(language for language in LANGUAGES if language != default)]
    return request.accept_languages.best_match(offered, default=default)


def _in_request() -> bool:
    from flask import has_request_context

    return has_request_context()


def compile_catalogs(directory: Path = TRANSLATIONS) -> list[Path]:
    """Compile every messages.po whose .mo is missing or older; return the files written."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    written = []
    for po in sorted(directory.glob("*/LC_MESSAGES/messages.po")):
        mo = po.with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        with po.open("rb") as source:
            catalog = read_po(source, locale=po.parts[-3])
        # A name of its own per process: gunicorn's workers may compile at the same moment.
        descriptor, tmp = tempfile.mkstemp(prefix=".messages.", suffix=".mo", dir=mo.parent)
        with os.fdopen(descriptor, "wb") as target:
            write_mo(target, catalog)
        os.chmod(tmp, 0o644)
        os.replace(tmp, mo)
        written.append(mo)
    return written


def init_app(app) -> None:
    """Compile the catalogs if needed and register Babel with the language selector."""
    compile_catalogs()
    babel.init_app(app, locale_selector=select_locale, default_translation_directories=str(TRANSLATIONS))
    app.jinja_env.globals["LANGUAGES"] = LANGUAGES
    app.jinja_env.globals["current_locale"] = lambda: str(get_locale() or "en")

