"""Render the Postfix and Dovecot files under ``config/`` that match the portal's schema.

The development stack, the tests and operators (``config render``) all use these
templates, so what is tested is what gets installed.
"""

from __future__ import annotations

import re
from pathlib import Path

import jinja2

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"

POSTFIX_MAPS = ("pgsql-domains.cf", "pgsql-users.cf", "pgsql-aliases.cf", "pgsql-recipient-access.cf",
                "pgsql-sender-login.cf")


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

# Dovecot's configuration language changed incompatibly in 2.4 (Debian 13); each
# series has its own templates, with the same file names and the same features.
DOVECOT_SERIES = ("2.3", "2.4")


def dovecot_series(version_text: str | None = None) -> str | None:
    """The series ("2.3" or "2.4") of ``dovecot --version`` output, or of this host's Dovecot (None: none here)."""
    if version_text is None:
        import shutil
        import subprocess

        dovecot = shutil.which("dovecot") or ("/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None)
        if dovecot is None:
            return None
        result = subprocess.run([dovecot, "--version"], capture_output=True, text=True, timeout=10,  # noqa: S603
                                check=False)
        version_text = result.stdout
    match = re.match(r"(\d+)\.(\d+)", version_text.strip())
    if not match:
        return None
    major, minor = int(match.group(1)), int(match.group(2))
    if (major, minor) == (2, 3):
        return "2.3"
    return "2.4" if major == 2 and minor >= 4 else None


# Dovecot checks a mailbox's app passwords in this many passdbs, one per slot (migration 0024 allows 1-8).
APP_PASSWORD_SLOTS = 8
# The IMAP ports mail clients use. A portal that signs in elsewhere gets a listener of its own (Dovecot's
# only door where a mailbox kept to app passwords may still use its main password).
MAIL_CLIENT_IMAP_PORTS = (143, 993)


def app_password_context(imap_host: str, imap_port: int, implicit_tls: bool = False) -> dict:
    """Template values of the app-password passdbs and the portal's own IMAP listener (port 0: none, when the
    portal signs in on a port mail clients use, or ``imap_port`` is 0; ``implicit_tls``: TLS from the first byte,
    as imap_security = "tls" asks)."""
    own_port = int(imap_port) not in (0, *MAIL_CLIENT_IMAP_PORTS)
    return {"app_password_slots": list(range(1, APP_PASSWORD_SLOTS + 1)),
            "portal_imap_host": imap_host, "portal_imap_port": int(imap_port) if own_port else 0,
            "portal_imap_ssl": implicit_tls}


def app_password_file(slot: int) -> str:
    """Dovecot 2.3's SQL file of one app-password slot (beside dovecot-sql.conf.ext)."""
    return f"dovecot-sql-app-password-{slot}.conf.ext"


def dovecot_template(name: str, series: str) -> str:
    """The template (under config/) of one Dovecot file for that series."""
    return f"dovecot/{name}" if series == "2.3" else f"dovecot-{series}/{name}"


# Dovecot's quota-warning service runs this script (the same for 2.3 and 2.4), which calls the portal's
# "notices quota-warning" command; it lives beside Dovecot's files.
QUOTA_WARNING_TEMPLATE = "quota-warning.sh"
QUOTA_WARNING_SCRIPT = "mail-portal-quota-warning.sh"
PORTAL_DIR = CONFIG_DIR.parent


def quota_warning_context(script: str, user: str, portal_config: str, python: str | None = None) -> dict:
    """Template values of the quota-warning service and its script: paths shell-quoted for the script.

    ``python`` defaults to the interpreter running this (the portal's virtualenv)."""
    import shlex
    import sys

    return {
        "quota_warning_script": script, "quota_warning_user": user,
        "portal_config": shlex.quote(portal_config), "python": shlex.quote(python or sys.executable),
        "portal_dir": shlex.quote(str(PORTAL_DIR)), "portal_app": shlex.quote(str(PORTAL_DIR / "app")),
    }
