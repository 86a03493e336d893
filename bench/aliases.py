"""Postfix alias lookups at 1M aliases and 100k mailboxes: the shipped map against the guide's.

Run as root (uses the stack's PostgreSQL cluster):  .venv/bin/python bench/aliases.py

Builds two databases with the same rows, generated with COPY:
- ``bench_portal``: the portal's schema (all migrations) and the shipped pgsql-aliases.cf query;
- ``bench_guide``: the deployment guide's DDL as written and its query
  ``SELECT destination FROM virtual_aliases WHERE source='%s'``.

Then, for each, with the read-only role Postfix uses:
1. per-lookup latency (p50/p99) of the map's own query text, sent the way Postfix's
   pgsql client sends it (literal SQL, one persistent connection);
2. throughput of the real Postfix client: ``postmap -q - pgsql:<map file>``.
Keys mix alias hits, mailbox addresses (a miss for the guide's query; the shipped
query answers a mailbox with itself) and ``@domain`` catch-all probes, as Postfix
sends them for ordinary recipients.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts"), str(ROOT / "bench")]

import psycopg  # noqa: E402
import psycopg.sql  # noqa: E402
import stack  # noqa: E402
from dataset import generate  # noqa: E402

from portal import mailconfig  # noqa: E402
from portal import migrate  # noqa: E402

GUIDE_SCHEMA = ROOT / "tests" / "fixtures" / "guide_schema.sql"
GUIDE_ALIAS_MAP = ROOT / "tests" / "fixtures" / "guide_postfix" / "pgsql-aliases.cf"
def build(name: str, schema: str, sizes: tuple[int, int, int]) -> dict:
    stack.ensure_database(name, fresh=True)
    with psycopg.connect(stack.database_url(name), autocommit=True) as conn:
        if schema == "portal":
            migrate.upgrade(conn, report=lambda _: None)
        else:
            conn.execute(GUIDE_SCHEMA.read_text())
        seconds = generate(conn, *sizes)
        stack.grant_mail_reader(conn)
    return {"database": name, "generate_seconds": round(seconds, 1)}


def map_query(map_text: str) -> str:
    for line_no, line in enumerate(lines := map_text.splitlines()):
        if line.startswith("query ="):
            query = [line.partition("=")[2].strip()]
            query += [cont.strip() for cont in lines[line_no + 1:] if cont.startswith((" ", "\t"))]
            return " ".join(query)
    raise ValueError("no query in map file")


def keys(sizes: tuple[int, int, int], count: int, seed: int = 7) -> list[str]:
    domains, mailboxes, aliases = sizes
    rng = random.Random(seed)
    found = []
    for n in range(count):
        kind = n % 4
        if kind < 2:
            a = rng.randint(1, aliases)
            found.append(f"a{a}@d{a % domains + 1}.example")
        elif kind == 2:
            u = rng.randint(1, mailboxes)
            found.append(f"u{u}@d{u % domains + 1}.example")
        else:
            found.append(f"@d{rng.randint(1, domains)}.example")
    return found


def sql_latency(db_name: str, query: str, lookup_keys: list[str]) -> dict:
    """Time each lookup as Postfix sends it: the key quoted into the SQL text."""
    url = stack.database_url(db_name, user=stack.DB_MAIL_READER)
    timings = []
    with psycopg.connect(url, autocommit=True) as conn:
        pgconn = conn.pgconn
        escaping = psycopg.pq.Escaping(pgconn)
        for key in lookup_keys:
            literal = escaping.escape_string(key.encode()).decode()  # what Postfix's dict_pgsql does
            text = query.replace("%s", literal)
            started = time.perf_counter()
            result = pgconn.exec_(text.encode())
            timings.append(time.perf_counter() - started)
            if result.status != psycopg.pq.ExecStatus.TUPLES_OK:
                raise RuntimeError(result.error_message.decode())
    ms = sorted(t * 1000 for t in timings)
    return {
        "lookups": len(ms),
        "p50_ms": round(statistics.median(ms), 3),
        "p99_ms": round(ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))], 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


def postmap_throughput(map_file: Path, lookup_keys: list[str]) -> dict:
    started = time.perf_counter()
    result = subprocess.run(
        ["postmap", "-q", "-", f"pgsql:{map_file}"], input="\n".join(lookup_keys) + "\n",
        capture_output=True, text=True, check=False,
    )
    seconds = time.perf_counter() - started
    if "warning" in result.stderr or "fatal" in result.stderr:
        raise RuntimeError(result.stderr)
    return {
        "lookups": len(lookup_keys),
        "answered": len(result.stdout.splitlines()),
        "seconds": round(seconds, 2),
        "mean_ms_per_lookup": round(seconds * 1000 / len(lookup_keys), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domains", type=int, default=10_000)
    parser.add_argument("--mailboxes", type=int, default=100_000)
    parser.add_argument("--aliases", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=20_000, help="lookups against the shipped map")
    parser.add_argument("--guide-lookups", type=int, default=200, help="lookups against the guide's (slow) map")
    parser.add_argument("--keep", action="store_true", help="keep the two databases afterwards")
    args = parser.parse_args()
    sizes = (args.domains, args.mailboxes, args.aliases)

    stack.ensure_cluster()
    stack.ensure_roles()
    results = {"sizes": dict(zip(("domains", "mailboxes", "aliases"), sizes, strict=True))}
    results["portal"] = build("bench_portal", "portal", sizes)
    results["guide"] = build("bench_guide", "guide", sizes)

    with tempfile.TemporaryDirectory() as tmp:
        shipped = Path(tmp) / "pgsql-aliases.cf"
        shipped.write_text(mailconfig.render("postfix/pgsql-aliases.cf", **stack.db_context("bench_portal")))
        guide = Path(tmp) / "guide-aliases.cf"
        guide.write_text(GUIDE_ALIAS_MAP.read_text().format(
            db_user=stack.DB_MAIL_READER, db_password=stack.stack_secrets()["reader_password"],
            db_hosts=f"inet:{stack.PG_HOST}:{stack.PG_PORT}", db_name="bench_guide",
        ))
        many, few = keys(sizes, args.lookups), keys(sizes, args.guide_lookups, seed=11)
        results["portal"]["sql"] = sql_latency("bench_portal", map_query(shipped.read_text()), many)
        results["portal"]["postmap"] = postmap_throughput(shipped, many)
        results["guide"]["sql"] = sql_latency("bench_guide", map_query(guide.read_text()), few)
        results["guide"]["postmap"] = postmap_throughput(guide, few)

    if not args.keep:
        stack.drop_database("bench_portal")
        stack.drop_database("bench_guide")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
