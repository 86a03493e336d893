"""Single mailbox create and delete latency with 1k and with 500k mailboxes in the database.

Run as root (uses the stack's PostgreSQL):  .venv/bin/python bench/mailbox_writes.py

For each size, builds a database with that many mailboxes (COPY), then times
``portal.rules.mailboxes.create_mailbox`` and ``delete_mailbox`` (the code behind the
admin pages: locks, limit checks, triggers, audit row, one transaction each) on
new addresses, in the large domain and in a small one. The password hash is made
once beforehand: hashing costs the same at any size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts"), str(ROOT / "bench")]

import psycopg  # noqa: E402
import stack  # noqa: E402
from dataset import generate  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

from portal import migrate  # noqa: E402
from portal.access import Actor  # noqa: E402
from portal.passwords import hash_password  # noqa: E402
from portal.queries import mailboxes as mailbox_queries  # noqa: E402
from portal.rules import mailboxes  # noqa: E402


def measure(size: int, rounds: int) -> dict:
    name = f"bench_writes_{size}"
    stack.ensure_database(name, fresh=True)
    password_hash = hash_password("bench password not used")
    timings: dict[str, list[float]] = {"create": [], "delete": []}
    with psycopg.connect(stack.database_url(name), autocommit=True, row_factory=dict_row) as conn:
        migrate.upgrade(conn, report=lambda _: None)
        generate(conn, domains=max(10, size // 50), mailboxes=size, aliases=size * 2, big_share=0.4)
        for n in range(rounds):
            domain_id = 1 if n % 2 == 0 else 2  # the large domain, then a small one
            domain = conn.execute("SELECT name FROM virtual_domains WHERE id = %s", (domain_id,)).fetchone()
            address = f"new{n}@{domain['name']}"
            started = time.perf_counter()
            mailboxes.create_mailbox(conn, Actor.command_line(), domain_id=domain_id, address=address,
                                     password_hash=password_hash, quota_bytes=0, reserved=[])
            timings["create"].append(time.perf_counter() - started)
            mailbox = mailbox_queries.get_mailbox(conn, address)
            started = time.perf_counter()
            mailboxes.delete_mailbox(conn, Actor.command_line(), mailbox=mailbox, mail_root="/nonexistent",
                                     grace_days=0)
            timings["delete"].append(time.perf_counter() - started)
    stack.drop_database(name)
    result = {}
    for kind, values in timings.items():
        ms = sorted(v * 1000 for v in values)
        result[kind] = {"n": len(ms), "p50_ms": round(statistics.median(ms), 2),
                        "p95_ms": round(ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))], 2)}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 500_000])
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    stack.ensure_cluster()
    stack.ensure_roles()
    results = {str(size): measure(size, args.rounds) for size in args.sizes}
    small, large = str(args.sizes[0]), str(args.sizes[-1])
    results["ratio_p50"] = {k: round(results[large][k]["p50_ms"] / results[small][k]["p50_ms"], 2)
                            for k in ("create", "delete")}
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
