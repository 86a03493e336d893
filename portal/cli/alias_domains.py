"""flask alias-domain: link, list, enable, disable and unlink alias domains (portal/rules/alias_domains.py)."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from ..queries import alias_domains as alias_domain_queries
from ..rules import alias_domains as alias_domain_rules
from ..rules import domains as domain_rules
from . import CLI_ACTOR
from . import confirm_typed
from . import connect

alias_domain_cli = AppGroup("alias-domain", help="Manage alias domains (example.org delivering as example.com).")


def _canonical(name: str) -> str:
    try:
        return domain_rules.domain_name(name)
    except domain_rules.DomainRuleError as exc:
        raise click.ClickException(f"{name!r}: {exc}") from None


@alias_domain_cli.command("add")
@click.argument("name")
@click.argument("target")
@click.option("--disabled", is_flag=True, help="Link it disabled.")
def add_command(name: str, target: str, disabled: bool):
    """Make NAME an alias domain of the domain TARGET: x@NAME delivers where x@TARGET does."""
    try:
        with connect() as conn:
            created = alias_domain_rules.create_alias_domain(
                conn, CLI_ACTOR, name=name, target=target, active=not disabled,
                delimiter=current_app.config["RECIPIENT_DELIMITER"])
    except (alias_domain_rules.AliasDomainError, domain_rules.DomainRuleError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{created} is an alias domain of {_canonical(target)}{' (disabled)' if disabled else ''}")


@alias_domain_cli.command("list")
def list_command():
    """List alias domains: name, target domain, status (tab-separated)."""
    with connect() as conn:
        for row in alias_domain_queries.every(conn):
            click.echo(f"{row['name']}\t{row['target']}\t{'active' if row['active'] else 'disabled'}")


def _set_active(name: str, active: bool) -> None:
    name = _canonical(name)
    try:
        with connect() as conn:
            row = alias_domain_rules.set_alias_domain_active(
                conn, CLI_ACTOR, name=name, active=active, delimiter=current_app.config["RECIPIENT_DELIMITER"])
    except alias_domain_rules.AliasDomainNotFound:
        raise click.ClickException(f"there is no alias domain {name}") from None
    except alias_domain_rules.AliasDomainError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{row['name']} is {'active' if active else 'disabled'}")


@alias_domain_cli.command("disable")
@click.argument("name")
def disable_command(name: str):
    """Disable an alias domain: mail to it is refused at once. Nothing is deleted."""
    _set_active(name, False)


@alias_domain_cli.command("enable")
@click.argument("name")
def enable_command(name: str):
    """Enable a disabled alias domain again."""
    _set_active(name, True)


@alias_domain_cli.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for the name again.")
def delete_command(name: str, yes: bool):
    """Unlink an alias domain and remove the aliases written on it; mail to it is refused at once."""
    name = _canonical(name)
    confirm_typed("Type the alias domain name to confirm", name, yes)
    try:
        with connect() as conn:
            removed = alias_domain_rules.delete_alias_domain(conn, CLI_ACTOR, name=name)
    except alias_domain_rules.AliasDomainNotFound:
        raise click.ClickException(f"there is no alias domain {name}") from None
    click.echo(f"deleted the alias domain {name}" + (f"; its aliases went with it: {', '.join(removed)}"
                                                     if removed else ""))
