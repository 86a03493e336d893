"""flask alias: add, list and delete a domain's aliases (the rules of portal/aliases.py and addressing.py)."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from ..addresses import InvalidAddress
from ..addresses import canonical_address
from ..queries import alias_domains as alias_domain_queries
from ..queries import aliases as alias_queries
from ..queries import listing
from ..rules import addressing
from ..rules import aliases as alias_rules
from ..rules import domains as domain_rules
from . import CLI_ACTOR
from . import connect
from . import every_row
from .domains import find_domain

alias_cli = AppGroup("alias", help="Manage aliases.")


def _domain_of_alias(conn, name: str) -> tuple[str, dict]:
    """The canonical domain part of an alias address and the mail domain it belongs to (an alias domain's
    aliases belong to its target domain)."""
    canonical = domain_rules.domain_name(name) if name.strip() else name
    linked = alias_domain_queries.get_by_name(conn, canonical)
    if linked is not None:
        return canonical, find_domain(conn, linked["target"])
    domain = find_domain(conn, name)
    return domain["name"], domain


def _source(conn, text: str) -> tuple[str, dict]:
    """The canonical alias address (``@domain`` for a catch-all) and its domain row."""
    text = text.strip()
    try:
        if text.startswith("@"):
            name, domain = _domain_of_alias(conn, text[1:])
            return "@" + name, domain
        source = canonical_address(text)
    except (InvalidAddress, domain_rules.DomainRuleError) as exc:
        raise click.ClickException(f"{text!r} {exc}") from None
    return source, _domain_of_alias(conn, source.rpartition("@")[2])[1]


@alias_cli.command("add")
@click.argument("source")
@click.argument("destinations", nargs=-1, required=True)
@click.option("--replace", is_flag=True, help="Replace the destinations of an existing alias.")
def add_command(source: str, destinations: tuple[str, ...], replace: bool):
    """Make SOURCE (an address, or @domain for the catch-all) deliver to DESTINATIONS."""
    parsed, problems = addressing.parse_destinations(list(destinations))
    if problems:
        raise click.ClickException(" ".join(problems))
    with connect() as conn:
        address, domain = _source(conn, source)
        exists = bool(alias_queries.destinations(conn, address))
        if exists and not replace:
            raise click.ClickException(f"{address} exists; add --replace to change where it delivers")
        try:
            alias_rules.save_alias(conn, CLI_ACTOR, domain=domain, source=address, destinations=parsed,
                                   create=not exists,
                                   reserved=list(current_app.config["RESERVED_LOCAL_PARTS"]),
                                   delimiter=current_app.config["RECIPIENT_DELIMITER"])
        except alias_rules.AliasNotFound:
            raise click.ClickException(f"{address} is a mailbox's forwarding; its owner sets it") from None
        except addressing.AliasRuleError as exc:
            raise click.ClickException(" ".join(exc.problems)) from None
    click.echo(f"{address} delivers to {', '.join(parsed)}")


@alias_cli.command("list")
@click.argument("domain")
@click.option("--search", default="", help="Only addresses starting with this.")
def list_command(domain: str, search: str):
    """List a domain's aliases: address, kind, destinations (tab-separated)."""
    with connect() as conn:
        row = find_domain(conn, domain)
        search_for = listing.Search(search.strip().lower())
        for a in every_row(lambda after, limit: listing.aliases(conn, row["id"], search_for, after, limit=limit)):
            kind = ("forwarding" if a["mailbox"] else "personal" if a["personal"]
                    else "catch-all" if a["source"].startswith("@") else "alias")
            click.echo(f"{a['source']}\t{kind}\t{','.join(a['destinations'])}")


@alias_cli.command("delete")
@click.argument("source")
def delete_command(source: str):
    """Remove the alias SOURCE with all its destinations."""
    with connect() as conn:
        address, domain = _source(conn, source)
        try:
            alias_rules.delete_alias(conn, CLI_ACTOR, domain=domain, source=address,
                                     reserved=list(current_app.config["RESERVED_LOCAL_PARTS"]))
        except alias_rules.AliasNotFound:
            raise click.ClickException(f"{address} is not an alias of {domain['name']}") from None
    click.echo(f"deleted {address}")
