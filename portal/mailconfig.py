"""Render the Postfix and Dovecot files under ``config/`` that match the portal's schema.

The development stack, the tests and operators (``config render``) all use these
templates, so what is tested is what gets installed.
"""

from __future__ import annotations

from pathlib import Path

import jinja2

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"

POSTFIX_MAPS = ("pgsql-domains.cf", "pgsql-users.cf", "pgsql-aliases.cf", "pgsql-recipient-access.cf")


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(CONFIG_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - config files, not HTML
    )


def render(template: str, **context) -> str:
    """Render one template (path relative to ``config/``, without ``.j2``)."""
    return _environment().get_template(f"{template}.j2").render(**context)


def write(path: Path, text: str, mode: int = 0o640) -> bool:
    """Write a rendered file with tight permissions; return True if it changed."""
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text() if path.exists() else None
    if old != text:
        # mkstemp makes a new 0600 file (never following a link): the password in it is
        # never readable by others, not even before the chmod.
        descriptor, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(descriptor, "w") as out:
            out.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    path.chmod(mode)
    return old != text

DOVECOT_FILES = ("dovecot-sql.conf.ext", "dovecot-dict-quota.conf.ext")
