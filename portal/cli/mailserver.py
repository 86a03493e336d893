"""flask mailserver apply: install the portal's Postfix and Dovecot files on this server, all or nothing."""

from __future__ import annotations

import grp
import shutil
import subprocess
from datetime import UTC
from datetime import datetime
from pathlib import Path

import click
import psycopg
from flask import current_app
from flask.cli import AppGroup
from psycopg.conninfo import conninfo_to_dict

from .. import db
from .. import mailserver
from ..queries import mailserver as mailserver_queries
from .config import postfix_auth_socket_option
from .config import rendered_files
from .doctor import Doctor
from .doctor import run_checks

mailserver_cli = AppGroup("mailserver", help="Install the portal's files on this mail server.")

MAIN_CF_MAPS = {"virtual_mailbox_domains": "pgsql-domains.cf", "virtual_mailbox_maps": "pgsql-users.cf",
                "virtual_alias_maps": "pgsql-aliases.cf"}


def _program(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        raise click.ClickException(f"{name} is not on this host: run apply on the mail server, as root")
    return found


def sieve_plugin_installed(doveconf: str, dovecot_config: Path) -> bool:
    """Whether Pigeonhole's LMTP plugin is in the directory this Dovecot loads plugins from."""
    result = subprocess.run([doveconf, "-c", str(dovecot_config), "-h", "mail_plugin_dir"],  # noqa: S603
                            capture_output=True, text=True, timeout=30, check=False)
    directory = Path(result.stdout.strip() or "/usr/lib/dovecot/modules")
    return any(directory.glob("lib*_sieve_plugin.so"))


def build_plan(database_url: str, postfix_dir: Path, dovecot_dir: Path, dovecot_config: Path, mail_root: str | None,
               vmail_user: str, portal_networks: str, dovecot_series: str,
               postfix_auth_socket: str) -> tuple[mailserver.Plan, list[str]]:
    """Decide every file, grant, check, reload and probe; touch nothing."""
    series, files, secrets = rendered_files(database_url, str(postfix_dir), str(dovecot_dir), mail_root, vmail_user,
                                            portal_networks, dovecot_series, postfix_auth_socket)
    changes = []
    for target, text, mode in files:
        kind, _, name = target.partition("/")
        if name == "main.cf.portal":
            continue  # its lines go into main.cf below
        if name == "master.cf.portal":
            continue  # a service to add by hand: opening port 587 is the operator's decision
        path = (postfix_dir if kind == "postfix" else dovecot_dir) / name
        group = "postfix" if kind == "postfix" and mode == 0o640 else (
            "dovecot" if name == "dovecot-dict-quota.conf.ext" and series == "2.3" else "root")
        changes.append(mailserver.FileChange(path, mailserver.read(path), text.encode(), mode, group))
    main_cf = postfix_dir / "main.cf"
    current = mailserver.read(main_cf)
    if current is None:
        raise click.ClickException(f"{main_cf} does not exist: is Postfix installed in {postfix_dir}?")
    owned = {param: f"pgsql:{postfix_dir}/{name}" for param, name in MAIN_CF_MAPS.items()}
    check = f"check_recipient_access pgsql:{postfix_dir}/pgsql-recipient-access.cf"
    info = main_cf.stat()
    changes.append(mailserver.FileChange(
        main_cf, current, mailserver.edit_main_cf(current.decode(), owned, check).encode(), info.st_mode & 0o7777,
        grp.getgrgid(info.st_gid).gr_name))

    reader = conninfo_to_dict(database_url)["user"]
    postfix, postmap, doveconf, doveadm = (_program(n) for n in ("postfix", "postmap", "doveconf", "doveadm"))
    if not sieve_plugin_installed(doveconf, dovecot_config):
        raise click.ClickException(
            "Dovecot's Sieve plugin is not installed here, and the portal's files load it for LMTP: without it"
            " every delivery would fail. Install it (apt-get install dovecot-sieve) and run"
            " apply again. Nothing was changed.")
    try:
        with db.connect(current_app.config) as conn:
            probe = mailserver_queries.probe_addresses(conn)
    except psycopg.Error as exc:
        raise click.ClickException(f"the portal's database cannot be read, so nothing was changed:"
                                   f" {str(exc).strip().splitlines()[0]}") from None

    def grants() -> None:
        try:
            with db.connect(current_app.config) as conn:
                mailserver_queries.grant_mail_reader(conn, reader)
        except psycopg.Error as exc:
            raise mailserver.MailServerError(f"granting {reader} what the new queries read:"
                                             f" {str(exc).strip().splitlines()[0]}") from None

    probes = []
    if probe["mailbox"]:
        probes.append(([postmap, "-c", str(postfix_dir), "-q", probe["mailbox"], f"pgsql:{postfix_dir}/pgsql-users.cf"],
                       f"Postfix finds the mailbox {probe['mailbox']}", probe["mailbox"]))
        probes.append(([doveadm, "-c", str(dovecot_config), "user", probe["mailbox"]],
                       f"Dovecot finds the mailbox {probe['mailbox']}", "home"))
    if probe["alias"]:
        source, destination = probe["alias"]
        probes.append(([postmap, "-c", str(postfix_dir), "-q", source, f"pgsql:{postfix_dir}/pgsql-aliases.cf"],
                       f"Postfix routes the alias {source}", destination))
    plan = mailserver.Plan(
        changes=changes, grants=grants,
        checks=[([postfix, "-c", str(postfix_dir), "check"], "postfix check"),
                ([doveconf, "-c", str(dovecot_config), "-n"], f"doveconf -n (Dovecot {series})")],
        reloads=[([postfix, "-c", str(postfix_dir), "reload"], "reloaded Postfix"),
                 ([doveadm, "-c", str(dovecot_config), "reload"], "reloaded Dovecot")],
        probes=probes,
    )
    return plan, secrets


@mailserver_cli.command("apply")
@click.option("--database-url", envvar="PORTAL_MAIL_DATABASE_URL", required=True,
              help="The connection Postfix and Dovecot use (the mail role, e.g. the guide's mailuser). "
                   "Default: $PORTAL_MAIL_DATABASE_URL.")
@click.option("--dry-run", is_flag=True, help="Show what would change (passwords hidden) and change nothing.")
@click.option("--postfix-dir", default="/etc/postfix", show_default=True, type=click.Path(path_type=Path))
@click.option("--dovecot-dir", default="/etc/dovecot", show_default=True, type=click.Path(path_type=Path))
@click.option("--dovecot-config", type=click.Path(path_type=Path),
              help="Dovecot's main file for doveconf and doveadm (default: DOVECOT_DIR/dovecot.conf).")
@click.option("--dovecot", "dovecot_series", type=click.Choice(["auto", "2.3", "2.4"]), default="auto",
              show_default=True)
@click.option("--mail-root", help="The maildir root (default: the portal's mail_root).")
@click.option("--vmail-user", default="vmail", show_default=True)
@click.option("--portal-networks", default="127.0.0.1/32 ::1/128", show_default=True,
              help="Addresses the portal connects to Dovecot from (login_trusted_networks).")
@click.option("--backup-dir", type=click.Path(path_type=Path),
              help="Where the files as they were go (default: /var/backups/mail-portal/<time>).")
@postfix_auth_socket_option
def apply_command(database_url: str, dry_run: bool, postfix_dir: Path, dovecot_dir: Path, dovecot_config: Path | None,
                  dovecot_series: str, mail_root: str | None, vmail_user: str, portal_networks: str,
                  backup_dir: Path | None, postfix_auth_socket: str):
    """Install the portal's Postfix maps and Dovecot files here: back up, grant, install, check, reload, probe.

    Only the main.cf lines the portal owns change (the three pgsql maps, and the
    check_recipient_access lookup added to smtpd_recipient_restrictions). Any
    failure, a warning of postfix check or doveconf included, puts every file
    back as it was and reloads again. doctor is the last step. Run as root."""
    dovecot_config = dovecot_config or dovecot_dir / "dovecot.conf"
    plan, secrets = build_plan(database_url, postfix_dir, dovecot_dir, dovecot_config, mail_root, vmail_user,
                               portal_networks, dovecot_series, postfix_auth_socket)
    if dry_run:
        diff = mailserver.masked_diff(plan.changes, secrets)
        click.echo(diff if diff else "nothing to change: the installed files are the portal's already")
        return
    backup_dir = backup_dir or Path("/var/backups/mail-portal") / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    try:
        changed = mailserver.apply(plan, backup_dir, click.echo)
    except mailserver.MailServerError as exc:
        raise click.ClickException(f"apply failed, and every file is back as it was: {exc}") from None
    if not changed:
        return
    failed = run_checks(Doctor(current_app.config, postfix_dir, str(dovecot_config)), prefix="doctor: ")
    if failed:
        raise click.ClickException(f"applied, but doctor found {failed} problem(s) above")
