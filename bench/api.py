"""The provisioning API at 10k domains, 500k mailboxes and 1M aliases: lists and creates under 8 clients.

Run as root (uses the stack's PostgreSQL; starts a Dovecot for /healthz and gunicorn with the shipped
config and 4 workers):
    apt-get install -y wrk
    .venv/bin/python bench/api.py

Builds ``bench_lists`` as bench/admin_lists.py does (``--keep`` / ``--reuse`` share that data set: 40 %
of the mailboxes and aliases in d1.example), gives its superadmin an API token, then,
after a second of each call unmeasured, drives each call with wrk, 8 connections for ``--seconds`` each,
the token in every request: the lists (first page, a page deep in the list through its cursor, a
search), one mailbox, the audit log, and mailbox creation (every request a new address in d2.example,
with a generated one-time password hashed as configured). p50/p95/p99 per call.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts"), str(ROOT / "bench")]

import psycopg  # noqa: E402
import stack  # noqa: E402
from admin_lists import ADMIN  # noqa: E402
from admin_lists import DB  # noqa: E402
from admin_lists import add_data_set_arguments  # noqa: E402
from admin_lists import build  # noqa: E402
from admin_lists import reuse  # noqa: E402
from admin_lists import start_gunicorn  # noqa: E402
from dataset import created_at  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

_REPORT = """
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d %d\\n", summary.requests, summary.errors.status,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), summary.duration))
end
"""

# Each request a new mailbox: a thread number, a counter and a random run tag make the local part.
_CREATE = """
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local counter = 0
request = function()
  counter = counter + 1
  local body = string.format('{"local_part": "api-%s-%d-%d"}', RUN, tid, counter)
  -- wrk.format takes these headers instead of wrk.headers (where -H put the token): copy them.
  local headers = {["Content-Type"] = "application/json"}
  for name, value in pairs(wrk.headers) do headers[name] = value end
  return wrk.format("POST", PATH, headers, body)
end
"""


CREATE_NAME = "create a mailbox (one-time password, SHA512-CRYPT)"


def make_token() -> str:
    """An API token of the data set's superadmin (only its hash is stored, as the portal does)."""
    secret = secrets.token_urlsafe(32)
    with psycopg.connect(stack.database_url(DB), autocommit=True, row_factory=dict_row) as conn:
        conn.execute("DELETE FROM portal_api_tokens")
        row = conn.execute(
            "INSERT INTO portal_api_tokens (mailbox_id, name, secret_sha256)"
            " SELECT id, 'bench', %s FROM virtual_users WHERE email = %s RETURNING id",
            (hashlib.sha256(secret.encode()).digest(), ADMIN)).fetchone()
    return f"mpt_{row['id']}_{secret}"


def _cursor(path: str, cursor: list, **params) -> str:
    return path + "?" + urllib.parse.urlencode({**params, "after": json.dumps(cursor, separators=(",", ":"))})


def calls() -> dict[str, str]:
    big = "/api/v1/domains/d1.example"
    return {
        "domain list, first page": "/api/v1/domains",
        "domain list, deep page": _cursor("/api/v1/domains", ["d5000.example"]),
        "mailbox list (200k-mailbox domain), first page": f"{big}/mailboxes",
        "mailbox list, deep page": _cursor(f"{big}/mailboxes", ["u150000@d1.example"]),
        "mailbox search": f"{big}/mailboxes?q=23456",
        "alias list (400k-alias domain), first page": f"{big}/aliases",
        "alias list, deep page": _cursor(f"{big}/aliases", ["a300000@d1.example"]),
        "one mailbox": "/api/v1/mailboxes/u123456@d1.example",
        "audit log, first page": "/api/v1/audit",
    }


def _wrk(base: str, token: str, path: str, connections: int, seconds: float, script: str) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(script + _REPORT)
        lua.flush()
        out = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{seconds:.0f}s", "-s", lua.name,
             "-H", f"Authorization: Bearer {token}", "-H", "X-Forwarded-For: 198.19.9.1", base + path],
            capture_output=True, text=True, check=True,
        ).stdout
    line = next(line for line in out.splitlines() if line.startswith("RESULT"))
    requests, bad, p50, p95, p99, duration_us = map(int, line.split()[1:])
    return {"n": requests, "non_2xx": bad, "p50_ms": round(p50 / 1000, 1), "p95_ms": round(p95 / 1000, 1),
            "p99_ms": round(p99 / 1000, 1), "per_second": round(requests / (duration_us / 1e6), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_set_arguments(parser)
    parser.add_argument("--seconds", type=float, default=10, help="per call")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--gunicorn-threads", type=int, default=0,
                        help="gunicorn threads per worker (default: the shipped config's)")
    parser.add_argument("--only", default="", help="run only the calls whose name contains this")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("bench/api.py drives the API with wrk: apt-get install -y wrk")

    stack.ensure_cluster()
    stack.ensure_roles()
    seconds = 0.0
    if args.reuse:
        reuse()
    else:
        seconds, _password = build((args.domains, args.mailboxes, args.aliases), 0.4)
    with psycopg.connect(stack.database_url(DB), autocommit=True) as conn:
        # The audit log of a server that has run a while: 200k rows (as bench/admin_lists.py's audit pages).
        if conn.execute("SELECT count(*) FROM portal_audit_log").fetchone()[0] < 200_000:
            from dataset import generate_audit

            generate_audit(conn, 200_000, args.domains, args.mailboxes)
    token = make_token()
    # No call here signs in, but /healthz (which gunicorn's start is awaited on) asks Dovecot.
    dovecot = stack.Instance("bench", DB, imap_port=14143, lmtp_port=14024, smtp_port=14025)
    with contextlib.redirect_stdout(sys.stderr):  # the figures alone go to standard output
        stack.render_dovecot(dovecot)
        stack.start_dovecot(dovecot, restart=True)
    settings = {"PORTAL_API_CALLS_PER_MINUTE": "100000000"}
    if args.gunicorn_threads:
        settings["PORTAL_THREADS"] = str(args.gunicorn_threads)
    server, base = start_gunicorn(dovecot.imap_port, args.workers, **settings)
    results: dict = {"calls": {}}
    try:
        # Unmeasured first: a server that has been running has its workers' pools open and its code warm.
        for path in calls().values():
            _wrk(base, token, path, args.clients, 1, "")
        for name, path in calls().items():
            if args.only in name:
                results["calls"][name] = _wrk(base, token, path, args.clients, args.seconds, "")
        create = _CREATE.replace("RUN", json.dumps(secrets.token_hex(3))).replace(
            "PATH", json.dumps("/api/v1/domains/d2.example/mailboxes"))
        if args.only in CREATE_NAME:
            results["calls"][CREATE_NAME] = _wrk(
                base, token, "/api/v1/domains/d2.example/mailboxes", args.clients, args.seconds, create)
    finally:
        server.terminate()
        server.wait(timeout=10)
        stack.stop_dovecot(dovecot)
        if not args.keep:
            stack.drop_database(DB)
    results.update(
        sizes={"domains": args.domains, "mailboxes": args.mailboxes, "aliases": args.aliases, "big_share": 0.4},
        generate_seconds=round(seconds, 1), clients=args.clients, workers=args.workers, cpus=os.cpu_count(),
        gunicorn_threads=args.gunicorn_threads or "config",
        error_count=sum(r["non_2xx"] for r in results["calls"].values()),
        newest_mailbox=created_at(args.mailboxes).isoformat(),
    )
    print(json.dumps(results, indent=2))
    return 0 if results["error_count"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
