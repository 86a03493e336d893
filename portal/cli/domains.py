"""flask domain: add, list, enable, disable and delete domains (the rules of portal/domains.py)."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from ..queries import domains as domain_queries
from ..queries import listing
from ..rules import domains as domain_rules
from ..rules import mailboxes as mailbox_rules
from . import CLI_ACTOR
from . import confirm_typed
from . import connect
from . import every_row

domain_cli = AppGroup("domain", help="Manage domains.")


def find_domain(conn, name: str) -> dict:
    """The full row of the domain NAME, or a ClickException that says it is missing."""
    try:
        canonical = domain_rules.domain_name(name)
    except domain_rules.DomainRuleError as exc:
        raise click.ClickException(f"{name!r}: {exc}") from None
    row = domain_queries.get_domain_by_name(conn, canonical)
    if row is None:
        raise click.ClickException(f"there is no domain {canonical}")
    return domain_queries.get_domain(conn, row["id"])


@domain_cli.command("add")
@click.argument("name")
@click.option("--max-mailboxes", type=click.IntRange(0, 10_000_000), default=0, show_default=True, help="0: no limit")
@click.option("--max-aliases", type=click.IntRange(0, 10_000_000), default=0, show_default=True, help="0: no limit")
@click.option("--default-quota", default="", help='Size limit of a new mailbox, e.g. "2 GB"; empty: unlimited')
@click.option("--max-quota", default="", help="Largest size limit a mailbox may get; empty: no ceiling")
@click.option("--personal-aliases/--no-personal-aliases", default=True, show_default=True)
@click.option("--max-personal-aliases", type=click.IntRange(0, 1000), default=5, show_default=True)
@click.option("--disabled", is_flag=True, help="Create it disabled.")
def add_command(name, max_mailboxes, max_aliases, default_quota, max_quota, personal_aliases, max_personal_aliases,
                disabled):
    """Create the domain NAME (stored lower-case, in its ASCII form)."""
    try:
        settings = domain_rules.settings_from(
            default_quota=default_quota, max_quota=max_quota, active=not disabled, max_mailboxes=max_mailboxes,
            max_aliases=max_aliases, allow_personal_aliases=personal_aliases,
            max_personal_aliases=max_personal_aliases,
        )
        with connect() as conn:
            created = domain_rules.create_domain(conn, CLI_ACTOR, name=name, settings=settings)
    except domain_rules.DomainRuleError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created {created}")


@domain_cli.command("list")
@click.option("--search", default="", help="Only names starting with this.")
def list_command(search: str):
    """List domains: name, status, mailboxes, aliases (tab-separated)."""
    with connect() as conn:
        search_for = listing.Search(search.strip().lower())
        for d in every_row(lambda after, limit: listing.domains(conn, None, search_for, after, limit=limit)):
            click.echo(f"{d['name']}\t{'active' if d['active'] else 'disabled'}\t{d['mailboxes']}\t{d['aliases']}")


def _set_active(name: str, active: bool) -> None:
    with connect() as conn:
        domain = find_domain(conn, name)
        if domain["active"] == active:
            click.echo(f"{domain['name']} was already {'active' if active else 'disabled'}")
            return
        settings = {**domain_rules.current_settings(domain), "active": active}
        try:
            domain_rules.update_domain(conn, CLI_ACTOR, domain=domain, settings=settings,
                                       delimiter=current_app.config["RECIPIENT_DELIMITER"])
        except domain_rules.DomainRuleError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"{domain['name']} is {'active' if active else 'disabled'}")


@domain_cli.command("disable")
@click.argument("name")
def disable_command(name: str):
    """Disable a domain: its mailboxes neither sign in nor receive mail. Nothing is deleted."""
    _set_active(name, False)


@domain_cli.command("enable")
@click.argument("name")
def enable_command(name: str):
    """Enable a disabled domain again."""
    _set_active(name, True)


@domain_cli.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for the name again.")
def delete_command(name: str, yes: bool):
    """Delete a domain with its mailboxes and aliases; the mail is kept for the grace period."""
    grace = int(current_app.config["MAILBOX_PURGE_GRACE_DAYS"])
    with connect() as conn:
        domain = find_domain(conn, name)
        click.echo(f"{domain['name']}: {domain['mailbox_count']} mailboxes and {domain['alias_count']} alias rows"
                   f" will go; their mail is kept for {grace} days.")
        confirm_typed("Type the domain name to confirm", domain["name"], yes)
        try:
            summary = mailbox_rules.delete_domain(conn, CLI_ACTOR, domain=domain,
                                                  mail_root=current_app.config["MAIL_ROOT"], grace_days=grace)
        except mailbox_rules.MailboxRuleError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"deleted {domain['name']} with {summary['mailboxes']} mailboxes")
