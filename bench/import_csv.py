"""CSV import and export through the real command line: 10k mailboxes with plain passwords, 100k already hashed.

Run as root (uses the stack's PostgreSQL):
    .venv/bin/python bench/import_csv.py

For each case: a fresh database with the portal's schema and 100 domains, a
generated CSV, then ``flask --app app import mailboxes FILE`` timed as a whole
process (start-up, reading, checking against the database, policy check and
hashing in a process pool, COPY, one audit row per mailbox, commit). The 100k
case gives every row the same valid SHA512-CRYPT hash (import checks the
format, it does not re-hash). Then ``flask export mailboxes`` of the result is
timed and compared with the input's addresses.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

import psycopg  # noqa: E402
import stack  # noqa: E402

from portal import migrate  # noqa: E402
from portal.passwords import hash_password  # noqa: E402

DOMAINS = 100


def flask(database: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PORTAL_DATABASE_URL": stack.database_url(database),
           "PORTAL_SECRET_KEY": secrets.token_hex(32)}
    env.pop("PORTAL_CONFIG", None)
    return subprocess.run([str(ROOT / ".venv/bin/flask"), "--app", "app", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True)


def case(count: int, hashed: bool, workdir: Path) -> dict:
    name = f"bench_import_{count}"
    stack.ensure_database(name, fresh=True)
    with psycopg.connect(stack.database_url(name), autocommit=True) as conn:
        migrate.upgrade(conn, report=lambda _: None)
        conn.execute("INSERT INTO virtual_domains (name) SELECT 'd' || n || '.example' FROM generate_series(1, %s) n",
                     (DOMAINS,))
    source = workdir / f"mailboxes-{count}.csv"
    one_hash = hash_password(secrets.token_urlsafe(16))
    with source.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["address", "name", "password_hash" if hashed else "password"])
        for n in range(count):
            secret = one_hash if hashed else f"bench {secrets.token_urlsafe(12)} {n}"
            writer.writerow([f"user{n}@d{n % DOMAINS + 1}.example", f"User {n}", secret])
    started = time.perf_counter()
    flask(name, "import", "mailboxes", str(source))
    import_seconds = time.perf_counter() - started
    started = time.perf_counter()
    exported = flask(name, "export", "mailboxes").stdout
    export_seconds = time.perf_counter() - started
    addresses = {row["address"] for row in csv.DictReader(exported.splitlines())}
    with psycopg.connect(stack.database_url(name), autocommit=True) as conn:
        audit_rows = conn.execute("SELECT count(*) FROM portal_audit_log").fetchone()[0]
    stack.drop_database(name)
    assert len(addresses) == count and audit_rows == count, (len(addresses), audit_rows)
    return {"mailboxes": count, "passwords": "hashed" if hashed else "plain", "import_s": round(import_seconds, 1),
            "per_mailbox_ms": round(import_seconds * 1000 / count, 2), "export_s": round(export_seconds, 1),
            "audit_rows": audit_rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plain", type=int, default=10_000)
    parser.add_argument("--hashed", type=int, default=100_000)
    args = parser.parse_args()
    stack.ensure_cluster()
    stack.ensure_roles()
    with tempfile.TemporaryDirectory() as workdir:
        results = [case(args.plain, False, Path(workdir)), case(args.hashed, True, Path(workdir))]
    print(json.dumps({"cpus": os.cpu_count(), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
