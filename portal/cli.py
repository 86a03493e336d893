"""Commands under ``flask --app app ...``."""

from __future__ import annotations

import click
import psycopg
from flask import current_app
from flask.cli import AppGroup

from . import db
from . import migrate
from . import quota

db_cli = AppGroup("db", help="Manage the database schema.")


def _connect() -> psycopg.Connection:
    try:
        return db.connect(current_app.config)
    except psycopg.Error as exc:
        raise click.ClickException(f"cannot connect to the database: {exc}") from None


@db_cli.command("upgrade")
def upgrade_command():
    """Apply pending migrations (all in one transaction; safe to run twice)."""
    with _connect() as conn:
        try:
            applied = migrate.upgrade(conn, report=click.echo)
        except migrate.MigrationError as exc:
            raise click.ClickException(f"{exc}\nThe database was not changed.") from None
    if applied:
        click.echo(f"database upgraded to version {applied[-1].version}")
    else:
        click.echo(f"database already at version {migrate.latest_version()}; nothing to do")


@db_cli.command("status")
def status_command():
    """Show pending migrations; exit status 1 when there are any."""
    with _connect() as conn:
        pending = migrate.pending_migrations(conn)
    if not pending:
        click.echo(f"up to date (version {migrate.latest_version()})")
        return
    for migration in pending:
        click.echo(f"pending: {migration.version:04d}_{migration.name}")
    raise SystemExit(1)


mailbox_cli = AppGroup("mailbox", help="Manage mailboxes.")


@mailbox_cli.command("set-quota")
@click.argument("address")
@click.argument("size")
def set_quota_command(address: str, size: str):
    """Set a mailbox's storage limit, e.g. '500 MB' or '2 GB'; 0 means the domain default.

    Dovecot reads the limit on the mailbox's next delivery or login: no reload needed.
    """
    from .addresses import InvalidAddress
    from .addresses import canonical_address
    from .queries import audit
    from .queries import domains
    from .queries import mailboxes
    from .queries import quota as quota_queries

    try:
        email = canonical_address(address)
        limit = quota.parse_size(size)
    except (InvalidAddress, quota.InvalidSize) as exc:
        raise click.ClickException(f"{address!r}: {exc}" if isinstance(exc, InvalidAddress) else str(exc)) from None
    with _connect() as conn:
        with conn.transaction():
            mailbox = mailboxes.get_mailbox(conn, email)
            if mailbox is None:
                raise click.ClickException(f"there is no mailbox {email}")
            problem = quota.limit_problem(limit, domains.get_domain(conn, mailbox["domain_id"]))
            if problem:
                raise click.ClickException(problem)
            quota_queries.set_mailbox_limit(conn, mailbox["id"], limit)
            audit.record(
                conn, actor="cli", actor_role="cli", client_addr=None, action="mailbox.quota",
                target=email, domain=mailbox["domain"],
                summary={"before": mailbox["quota_bytes"], "after": limit},
            )
            effective = quota_queries.mailbox_usage(conn, email)["limit_bytes"]
    shown = quota.format_size(effective) if effective else "unlimited"
    click.echo(f"{email}: limit {quota.format_size(limit) if limit else 'domain default'} (in effect: {shown})")


quota_cli = AppGroup("quota", help="Quota figures.")


@quota_cli.command("import")
@click.argument("listing", type=click.File("r"), default="-")
def quota_import_command(listing):
    """Load usage from 'doveadm -f tab quota get -A' on standard input.

    Dovecot's quota_clone writes a mailbox's usage when it changes; after quota is
    first switched on, mailboxes that already hold mail have no figures until then:
    doveadm -f tab quota get -A | flask --app app quota import
    (or name a file instead of standard input).
    """
    from .queries import quota as quota_queries

    figures: dict[str, dict[str, int]] = {}
    problems = []
    for number, line in enumerate(listing, start=1):
        fields = line.rstrip("\n").split("\t")
        if number == 1 and fields[:1] == ["Username"]:
            continue
        if len(fields) < 4 or not fields[3].isdigit() or fields[2] not in ("STORAGE", "MESSAGE"):
            problems.append(number)
            continue
        entry = figures.setdefault(fields[0].lower(), {"bytes": 0, "messages": 0})
        if fields[2] == "STORAGE":
            entry["bytes"] = int(fields[3]) * 1024  # doveadm reports storage in KiB
        else:
            entry["messages"] = int(fields[3])
    if problems:
        raise click.ClickException(
            f"lines {', '.join(map(str, problems[:10]))} are not 'doveadm -f tab quota get -A' output; nothing imported"
        )
    with _connect() as conn, conn.transaction():
        for email, entry in figures.items():
            quota_queries.store_usage(conn, email, entry["bytes"], entry["messages"])
    click.echo(f"imported usage of {len(figures)} mailboxes")


admin_cli = AppGroup("admin", help="Grant and revoke the portal's roles.")

_ROLE_CHOICES = ("domain-admin", "helpdesk", "superadmin")


def _role_change(change, role: str, address: str, domain: str | None):
    from . import roles

    try:
        with _connect() as conn:
            return change(conn, address=address, role=role, domain=domain, actor="cli", actor_role="cli",
                          client_addr=None)
    except roles.RoleError as exc:
        raise click.ClickException(str(exc)) from None


@admin_cli.command("grant")
@click.argument("role", type=click.Choice(_ROLE_CHOICES))
@click.argument("address")
@click.argument("domain", required=False)
def grant_command(role: str, address: str, domain: str | None):
    """Give ROLE to the mailbox ADDRESS (domain-admin, and helpdesk if limited, in DOMAIN)."""
    from . import roles

    granted, mailbox, _, domain_row = _role_change(roles.grant, role, address, domain)
    where = f" in {domain_row['name']}" if domain_row else ""
    click.echo(f"{mailbox['email']} {'is now' if granted else 'was already'} {role}{where}")


@admin_cli.command("revoke")
@click.argument("role", type=click.Choice(_ROLE_CHOICES))
@click.argument("address")
@click.argument("domain", required=False)
def revoke_command(role: str, address: str, domain: str | None):
    """Take ROLE back from the mailbox ADDRESS."""
    from . import roles

    mailbox, _, domain_row = _role_change(roles.revoke, role, address, domain)
    click.echo(f"{mailbox['email']} is no longer {role}{' in ' + domain_row['name'] if domain_row else ''}")


@admin_cli.command("list")
def list_command():
    """List every role holder."""
    from .queries import roles

    with _connect() as conn:
        rows = roles.all_roles(conn)
    if not rows:
        click.echo("no roles granted yet: flask --app app admin grant superadmin ADDRESS")
    for row in rows:
        click.echo(f"{row['email']}\t{row['role'].replace('_', '-')}\t{row['domain'] or '*'}")


@mailbox_cli.command("purge")
@click.option("--address", help="Purge this deleted mailbox's mail now, before its grace period ends.")
def purge_command(address: str | None):
    """Remove the maildirs of deleted mailboxes whose grace period is over."""
    import shutil
    from pathlib import Path

    from . import mailboxes

    root = Path(current_app.config["MAIL_ROOT"]).resolve()
    with _connect() as conn:
        due = mailboxes.due_removals(conn, address.strip().lower() if address else None)
        if address and not due:
            raise click.ClickException(f"no deleted mailbox {address} is waiting to be purged")
        for removal in due:
            maildir = Path(removal["maildir"]).resolve()
            # Never follow a path out of the mail root, whatever the table says.
            if root not in maildir.parents:
                raise click.ClickException(f"{maildir} is not inside {root}; not removing it")
            if maildir.exists():
                shutil.rmtree(maildir)
            with conn.transaction():
                mailboxes.mark_purged(conn, removal["id"])
                from .queries import audit

                audit.record(conn, actor="cli", actor_role="cli", client_addr=None, action="mailbox.purge",
                             target=removal["email"], domain=removal["email"].partition("@")[2],
                             summary={"maildir": str(maildir)})
            click.echo(f"purged {removal['email']} ({maildir})")
    if not due:
        click.echo("nothing to purge")
