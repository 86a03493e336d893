"""flask quota: usage figures."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from . import connect as _connect

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
    from ..queries import quota as quota_queries

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
