"""Postfix lookups with alias domains: the shipped maps at 1M aliases, 500k mailboxes and 5k alias domains.

Run as root (uses the stack's PostgreSQL cluster):  .venv/bin/python bench/alias_domains.py

Builds one database (``bench_alias_domains``, the portal's schema) with COPY:
10k domains, 500k mailboxes, 1M aliases, a catch-all on every tenth domain, and
5k alias domains (``ad<i>.test`` mirroring ``d<i>.example``). In the same run,
with the read-only role Postfix uses, it times each lookup as Postfix's pgsql
client sends it (literal SQL on one persistent connection; p50/p99) for:

- today's alias map before alias domains (``BEFORE_ALIAS_MAP``, the query of
  ``pgsql-aliases.cf`` up to migration 0016), on the keys it knows;
- the shipped alias map on the same keys, and on alias-domain keys: a mailbox,
  an alias and an unknown address on an alias domain, and the ``@alias``
  catch-all probe Postfix sends after a miss;
- the shipped domains and recipient-access maps on a mix of both kinds;
- the sender-login map (submission) on a mailbox, its alias-domain form, a
  granted ``info@`` and an alias nobody owns;

each key set twice (the second pass is the steady state of a long-running Postfix
process, the first what follows a restart), then pushes every key through the real
Postfix client (``postmap -q -``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts"), str(ROOT / "bench")]

import psycopg  # noqa: E402
import stack  # noqa: E402
from aliases import keys as plain_keys  # noqa: E402
from aliases import map_query  # noqa: E402
from aliases import postmap_throughput  # noqa: E402
from aliases import sql_latency  # noqa: E402
from dataset import generate  # noqa: E402

from portal import mailconfig  # noqa: E402
from portal import migrate  # noqa: E402

DATABASE = "bench_alias_domains"
# config/postfix/pgsql-aliases.cf.j2 as it was before alias domains (commit 5a1ba56): literal SQL.
BEFORE_ALIAS_MAP = (
    "SELECT a.destination FROM virtual_aliases a JOIN virtual_domains d ON d.id = a.domain_id"
    " WHERE a.source = '%s' AND d.active"
    " AND NOT EXISTS (SELECT 1 FROM virtual_users u WHERE u.email = a.source AND NOT u.active)"
    " UNION ALL SELECT u.email FROM virtual_users u WHERE u.email = '%s'"
    " AND (NOT u.active OR NOT EXISTS (SELECT 1 FROM virtual_aliases a WHERE a.source = '%s'))"
)


def build(sizes: tuple[int, int, int], alias_domains: int) -> dict:
    stack.ensure_database(DATABASE, fresh=True)
    with psycopg.connect(stack.database_url(DATABASE), autocommit=True) as conn:
        migrate.upgrade(conn, report=lambda _: None)
        seconds = generate(conn, *sizes)
        domains, mailboxes, _ = sizes
        conn.execute(
            "INSERT INTO virtual_aliases (domain_id, source, destination)"
            " SELECT d, '@d' || d || '.example', 'u' || d || '@d' || (d %% %s + 1) || '.example'"
            " FROM generate_series(1, %s, 10) AS d", (domains, domains))
        conn.execute(
            "INSERT INTO portal_alias_domains (name, target_domain_id)"
            " SELECT 'ad' || i || '.test', i FROM generate_series(1, %s) AS i", (alias_domains,))
        # A send-as grant in every domain: info@d<d> to one of its mailboxes.
        conn.execute(
            "INSERT INTO portal_send_as (mailbox_id, address)"
            " SELECT min(id), 'info@' || split_part(min(email), '@', 2) FROM virtual_users GROUP BY domain_id")
        conn.execute("VACUUM ANALYZE")
        stack.grant_mail_reader(conn)
    # Write the build's dirty pages out now: otherwise the checkpointer spends the next minutes flushing
    # about a gigabyte while the lookups are timed, which a server that loaded its data long ago does not.
    stack.psql_as_superuser("CHECKPOINT")
    return {"database": DATABASE, "generate_seconds": round(seconds, 1)}


def sender_keys(sizes: tuple[int, int, int], alias_domains: int, count: int, rng: random.Random) -> list[str]:
    """Sender addresses on submission: a mailbox, its alias-domain form, a granted info@, an alias nobody owns."""
    domains, mailboxes, aliases = sizes
    found = []
    for n in range(count):
        kind = n % 4
        if kind == 0:
            u = rng.randint(1, mailboxes)
            found.append(f"u{u}@d{u % domains + 1}.example")
        elif kind == 1:
            u = rng.randint(1, mailboxes // domains - 1) * domains + rng.randint(0, alias_domains - 1)
            found.append(f"u{u}@ad{u % domains + 1}.test")
        elif kind == 2:
            found.append(f"info@d{rng.randint(1, domains)}.example")
        else:
            a = rng.randint(1, aliases)
            found.append(f"a{a}@d{a % domains + 1}.example")
    return found


def alias_domain_keys(sizes: tuple[int, int, int], alias_domains: int, count: int, rng: random.Random) -> list[str]:
    """Keys on alias domains: a mailbox, an alias, an unknown address, and the ``@alias`` probe."""
    domains, mailboxes, aliases = sizes
    found = []
    for n in range(count):
        kind = n % 4
        if kind == 0:  # u<u> lives in d<u % domains + 1>; pick one whose domain has an alias domain
            u = rng.randint(1, mailboxes // domains - 1) * domains + rng.randint(0, alias_domains - 1)
            found.append(f"u{u}@ad{u % domains + 1}.test")
        elif kind == 1:
            a = rng.randint(1, aliases // domains - 1) * domains + rng.randint(0, alias_domains - 1)
            found.append(f"a{a}@ad{a % domains + 1}.test")
        elif kind == 2:
            found.append(f"nobody{n}@ad{rng.randint(1, alias_domains)}.test")
        else:
            found.append(f"@ad{rng.randint(1, alias_domains)}.test")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domains", type=int, default=10_000)
    parser.add_argument("--mailboxes", type=int, default=500_000)
    parser.add_argument("--aliases", type=int, default=1_000_000)
    parser.add_argument("--alias-domains", type=int, default=5_000)
    parser.add_argument("--lookups", type=int, default=20_000, help="lookups per map and key kind")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--reuse", action="store_true", help="use the database a --keep run left")
    parser.add_argument("--shared-buffers", metavar="SIZE",
                        help="run with PostgreSQL's shared_buffers at SIZE (e.g. 1GB, as a server sized for its data"
                             " would), restarting the stack's cluster, and put it back afterwards")
    args = parser.parse_args()
    if args.shared_buffers:
        return with_shared_buffers(args.shared_buffers, lambda: run(args))
    return run(args)


def with_shared_buffers(size: str, work) -> int:
    """Run ``work`` with the stack cluster's shared_buffers at ``size``; restore the setting and restart after."""
    if not re.fullmatch(r"\d+(kB|MB|GB)", size):
        raise SystemExit(f"--shared-buffers takes a size such as 512MB or 1GB, not {size!r}")
    def restart() -> None:
        with contextlib.redirect_stdout(sys.stderr):  # the figures alone go to standard output
            stack.stop_cluster()
            stack.start_cluster()

    stack.ensure_cluster()
    stack.psql_as_superuser(f"\\set size {size}\nALTER SYSTEM SET shared_buffers = :'size';")
    try:
        restart()
        return work()
    finally:
        stack.psql_as_superuser("ALTER SYSTEM RESET shared_buffers;")
        restart()


def run(args) -> int:
    """Build (or reuse) the database, time every map, print the figures as JSON."""
    sizes = (args.domains, args.mailboxes, args.aliases)

    stack.ensure_cluster()
    stack.ensure_roles()
    results: dict = {"sizes": {"domains": args.domains, "mailboxes": args.mailboxes, "aliases": args.aliases,
                               "alias_domains": args.alias_domains},
                     "shared_buffers": stack.psql_as_superuser("SHOW shared_buffers")}
    results["build"] = {"database": DATABASE, "reused": True} if args.reuse else build(sizes, args.alias_domains)
    with psycopg.connect(stack.database_url(DATABASE), autocommit=True) as conn:
        migrate.upgrade(conn, report=lambda _: None)  # a kept database gets the newest lookups too
        stack.grant_mail_reader(conn)
    rng = random.Random(7)
    plain = plain_keys(sizes, args.lookups)  # the mix of bench/aliases.py
    linked = alias_domain_keys(sizes, args.alias_domains, args.lookups, rng)
    mixed = [key for pair in zip(plain, linked, strict=True) for key in pair]
    context = stack.db_context(DATABASE)
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for name in ("pgsql-aliases.cf", "pgsql-domains.cf", "pgsql-recipient-access.cf", "pgsql-sender-login.cf"):
            files[name] = Path(tmp) / name
            files[name].write_text(mailconfig.render(f"postfix/{name}", **context))
        shipped = map_query(files["pgsql-aliases.cf"].read_text())
        timed = [
            # The floor: one round trip to PostgreSQL on the same kind of connection, doing nothing.
            ("round trip alone (SELECT 1)", "SELECT 1", plain),
            ("alias map before alias domains, ordinary keys", BEFORE_ALIAS_MAP, plain),
            ("alias map, ordinary keys", shipped, plain),
            ("alias map, alias-domain keys", shipped, linked),
            ("domains map, both kinds", map_query(files["pgsql-domains.cf"].read_text()),
             [key.rpartition("@")[2] for key in mixed]),
            ("recipient access map, both kinds", map_query(files["pgsql-recipient-access.cf"].read_text()),
             [k for k in mixed if k[0] != "@"]),
            ("sender-login map, submission senders", map_query(files["pgsql-sender-login.cf"].read_text()),
             sender_keys(sizes, args.alias_domains, args.lookups, rng)),
        ]
        # Each set twice on a fresh connection: the first pass reads index pages the cache does not hold yet
        # (as after a restart); the second is the steady state of a long-running Postfix process.
        for label, query, lookup_keys in timed:
            results[label] = {"first pass": sql_latency(DATABASE, query, lookup_keys),
                              "second pass": sql_latency(DATABASE, query, lookup_keys)}
        results["postmap alias map, both kinds"] = postmap_throughput(files["pgsql-aliases.cf"], mixed)
    if not args.keep:
        stack.drop_database(DATABASE)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
