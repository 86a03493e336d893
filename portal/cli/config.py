"""flask config render: the Postfix and Dovecot files for this portal's schema, from the stack's own templates."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import urlsplit

import click
from flask import current_app
from flask.cli import AppGroup
from psycopg.conninfo import conninfo_to_dict

from .. import mailconfig

config_cli = AppGroup("config", help="Postfix and Dovecot configuration.")

# (template under config/, file under DIR, mode): secrets only for their owner (and group, for the
# daemons that read them as their group), the rest readable.
POSTFIX_FILES = (
    *((f"postfix/{name}", f"postfix/{name}", 0o640) for name in mailconfig.POSTFIX_MAPS),
    ("postfix/main.cf.portal", "postfix/main.cf.portal", 0o644),
    ("postfix/master.cf.portal", "postfix/master.cf.portal", 0o644),
)


def dovecot_files(series: str, doveadm: bool) -> list[tuple[str, str, int, dict]]:
    """(template, file under DIR, mode, extra values) of the Dovecot files for that series: the same names for 2.3
    and 2.4, and 2.3's one file per app-password slot.

    Dovecot 2.3's dict process reads the quota dict file itself, as the dovecot
    group; 2.4's config process reads everything as root. The doveadm listener
    and its key come only with doveadm_url set."""
    dict_mode = 0o640 if series == "2.3" else 0o600
    names = [("dovecot-sql.conf.ext", "dovecot/dovecot-sql.conf.ext", 0o600),
             ("dovecot-dict-quota.conf.ext", "dovecot/dovecot-dict-quota.conf.ext", dict_mode),
             ("auth-sql.conf.ext", "dovecot/conf.d/auth-sql.conf.ext", 0o644),
             ("99-mail-portal.conf", "dovecot/conf.d/99-mail-portal.conf", 0o644)]
    if doveadm:
        names.append(("mail-portal-doveadm.conf.ext", "dovecot/mail-portal-doveadm.conf.ext", 0o600))
    files = [(mailconfig.dovecot_template(name, series), target, mode, {}) for name, target, mode in names]
    if series == "2.3":  # 2.3 reads each SQL passdb's query from a file of its own: one per app-password slot
        files += [(mailconfig.dovecot_template("dovecot-sql-app-password.conf.ext", series),
                   f"dovecot/{mailconfig.app_password_file(slot)}", 0o600, {"slot": slot})
                  for slot in range(1, mailconfig.APP_PASSWORD_SLOTS + 1)]
    # The quota-warning service's script, the same for both series: root's, run by the service's user.
    return [*files, (mailconfig.QUOTA_WARNING_TEMPLATE, f"dovecot/{mailconfig.QUOTA_WARNING_SCRIPT}", 0o755, {})]


def doveadm_context(config) -> dict:
    """The listener address, port and key of Dovecot's doveadm HTTP API, from the portal's doveadm_url."""
    url = urlsplit(config["DOVEADM_URL"])
    if url.scheme != "http" or not url.hostname or not url.port:
        raise click.ClickException("doveadm_url must name http://, a host and a port for Dovecot's listener, "
                                   "e.g. http://127.0.0.1:8080/doveadm/v1")
    return {"doveadm_address": url.hostname, "doveadm_port": url.port, "doveadm_api_key": config["DOVEADM_API_KEY"]}


def database_context(url: str) -> dict:
    """Host, port, name, user and password of a PostgreSQL URL or conninfo, for the templates."""
    try:
        parts = conninfo_to_dict(url)
    except Exception as exc:  # psycopg raises ProgrammingError with the URL in its text
        raise click.ClickException(f"the database URL cannot be read ({type(exc).__name__})") from None
    missing = [key for key in ("dbname", "user", "password") if not parts.get(key)]
    if missing:
        raise click.ClickException(f"the database URL names no {', '.join(missing)}; Postfix and Dovecot need them")
    if any(ch.isspace() or ch in "'\"\\" for ch in parts["password"]):
        raise click.ClickException("the mail role's password has a space, quote or backslash, which the Postfix and"
                                   " Dovecot files cannot carry safely; give that role a password without them")
    if (parts.get("host") or "").startswith("/"):
        raise click.ClickException("give Postfix and Dovecot a TCP host (such as 127.0.0.1) in the database URL,"
                                   " not a Unix socket directory")
    return {"db_host": parts.get("host") or "127.0.0.1", "db_port": parts.get("port") or 5432,
            "db_name": parts["dbname"], "db_user": parts["user"], "db_password": parts["password"]}


POSTFIX_AUTH_SOCKET = "/var/spool/postfix/private/auth"
# Dovecot's quota-warning service runs the portal's command as the portal's own user (README "Production"),
# who may read the portal's settings.
PORTAL_USER = "mail-portal"
PORTAL_CONFIG = "/etc/mail-portal/portal.toml"


def warning_service_user(user: str | None = None) -> str:
    """The user Dovecot's quota-warning service runs as: ``user``, else the portal's own where it exists, else root.

    A service user that does not exist stops Dovecot, so where the portal has no user of its own
    (it runs as root) the script runs as root too."""
    import pwd

    if user:
        return user
    try:
        pwd.getpwnam(PORTAL_USER)
    except KeyError:
        return "root"
    return PORTAL_USER


def portal_config_path(path: str | None = None, dovecot_dir: str | None = None) -> str:
    """The settings file the quota-warning script names: ``path``, else $PORTAL_CONFIG, else the one the script
    installed in ``dovecot_dir`` names (a second run changes nothing), else README's /etc/mail-portal/portal.toml."""
    import os
    import re
    import shlex

    path = path or os.environ.get("PORTAL_CONFIG")
    if not path and dovecot_dir:
        try:
            installed = (Path(dovecot_dir) / mailconfig.QUOTA_WARNING_SCRIPT).read_text()
        except (OSError, UnicodeDecodeError):
            installed = ""
        named = re.search(r"(?m)^PORTAL_CONFIG=(.+)$", installed)
        try:
            path = shlex.split(named.group(1))[0] if named else None
        except (ValueError, IndexError):
            path = None
    return os.path.abspath(path or PORTAL_CONFIG)


def postfix_auth_socket_option(command):
    """--postfix-auth-socket: where Dovecot offers Postfix's submission service its password checks."""
    return click.option("--postfix-auth-socket", default=POSTFIX_AUTH_SOCKET, show_default=True,
                        help="Dovecot's auth socket for Postfix's submission service (smtpd_sasl_path"
                             " private/auth in Postfix's queue directory).")(command)


def rendered_files(database_url: str | None, postfix_dir: str, dovecot_dir: str, mail_root: str | None,
                   vmail_user: str, portal_networks: str, dovecot_series: str,
                   postfix_auth_socket: str = POSTFIX_AUTH_SOCKET, service_user: str | None = None,
                   portal_config: str | None = None) -> tuple[str, list, list[str]]:
    """(the Dovecot series, [(file under DIR, text, mode)], the secrets in them) of the portal's files."""
    context = {
        **mailconfig.quota_warning_context(f"{dovecot_dir.rstrip('/')}/{mailconfig.QUOTA_WARNING_SCRIPT}",
                                           warning_service_user(service_user),
                                           portal_config_path(portal_config, dovecot_dir)),
        **database_context(database_url or current_app.config["DATABASE_URL"]),
        "mail_root": (mail_root or current_app.config["MAIL_ROOT"]).rstrip("/"), "vmail_user": vmail_user,
        "portal_networks": portal_networks,
        "static_userdb": False,
        "postfix_auth_socket": postfix_auth_socket,
        **mailconfig.app_password_context(current_app.config["IMAP_HOST"], current_app.config["IMAP_PORT"],
                                          current_app.config["IMAP_SECURITY"] == "tls"),
    }
    for network in portal_networks.split():
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise click.ClickException(f"--portal-networks: {network!r} is no address or network, such as"
                                       " 127.0.0.1/32 or ::1/128") from None
    if dovecot_series == "auto":
        dovecot_series = mailconfig.dovecot_series()
        if dovecot_series is None:
            raise click.ClickException("no Dovecot 2.3 or 2.4 is installed here to tell which files to write:"
                                       " give --dovecot 2.3 or --dovecot 2.4")
    doveadm = bool(current_app.config["DOVEADM_URL"])
    if doveadm:
        context |= doveadm_context(current_app.config)
    files = []
    for template, target, mode, extra in [*((*entry, {}) for entry in POSTFIX_FILES),
                                          *dovecot_files(dovecot_series, doveadm)]:
        config_dir = postfix_dir if target.startswith("postfix/") else dovecot_dir
        files.append((target, mailconfig.render(template, **context, **extra, config_dir=config_dir.rstrip("/")),
                      mode))
    secrets = [context["db_password"], *([context["doveadm_api_key"]] if doveadm else [])]
    return dovecot_series, files, secrets


@config_cli.command("render")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--database-url", envvar="PORTAL_MAIL_DATABASE_URL",
              help="The connection Postfix and Dovecot use (a read-mostly role; see README). "
                   "Default: $PORTAL_MAIL_DATABASE_URL, else the portal's own database_url.")
@click.option("--postfix-dir", default="/etc/postfix", show_default=True, help="Where the Postfix files will live.")
@click.option("--dovecot-dir", default="/etc/dovecot", show_default=True, help="Where the Dovecot files will live.")
@click.option("--mail-root", help="The maildir root Dovecot's home= uses; default: the portal's mail_root.")
@click.option("--vmail-user", default="vmail", show_default=True)
@click.option("--portal-networks", default="127.0.0.1/32 ::1/128", show_default=True,
              help="Addresses the portal connects to Dovecot from (login_trusted_networks).")
@click.option("--dovecot", "dovecot_series", type=click.Choice(["auto", *mailconfig.DOVECOT_SERIES]), default="auto",
              show_default=True, help="The Dovecot the files are for: 2.3 (Debian 12), 2.4 (Debian 13), or the one"
                                      " installed here (dovecot --version).")
@postfix_auth_socket_option
@click.option("--quota-warning-user", help="The user Dovecot's quota-warning service runs the portal's command as:"
                                           " one that may read the portal's settings. Default: mail-portal where"
                                           " that user exists, else root.")
@click.option("--portal-config", help="The portal's settings file that command reads. Default: $PORTAL_CONFIG,"
                                      " else the one the installed script names, else /etc/mail-portal/portal.toml.")
def render_command(directory: Path, database_url: str | None, postfix_dir: str, dovecot_dir: str, mail_root: str,
                   vmail_user: str, portal_networks: str, dovecot_series: str, postfix_auth_socket: str,
                   quota_warning_user: str | None, portal_config: str | None):
    """Write the Postfix maps and Dovecot SQL, auth and quota files into DIRECTORY (never printing a password).

    Then install them as README "Production", step 5, says: the pgsql-*.cf maps and
    the Dovecot files replace the guide's, and the lines of postfix/main.cf.portal
    replace the guide's three lines in main.cf (it is not a file to copy). Reload both."""
    series, files, _ = rendered_files(database_url, postfix_dir, dovecot_dir, mail_root, vmail_user, portal_networks,
                                      dovecot_series, postfix_auth_socket, quota_warning_user, portal_config)
    click.echo(f"for Dovecot {series}")
    for target, text, mode in files:
        path = directory / target
        changed = mailconfig.write(path, text, mode)
        click.echo(f"{'wrote' if changed else 'unchanged'} {path} ({mode:o})")
    user, settings = warning_service_user(quota_warning_user), portal_config_path(portal_config, dovecot_dir)
    click.echo(f"quota warnings: Dovecot runs {dovecot_dir.rstrip('/')}/{mailconfig.QUOTA_WARNING_SCRIPT} as {user},"
               f" which reads {settings}")
    if not current_app.config["DOVEADM_URL"]:
        click.echo("doveadm_url is not set: open IMAP sessions are not ended when a mailbox is disabled (README)")
    if not current_app.config["NOTICE_FROM"]:
        click.echo("notice_from is not set: Dovecot runs the quota-warning service, but the portal sends no warning")
