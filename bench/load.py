"""50 concurrent clients for 60 s against gunicorn on the real stack: sign-ins, pages, forwarding and alias edits.

Run as root (uses the stack's PostgreSQL; starts its own Dovecot and gunicorn):
    .venv/bin/python bench/load.py [--clients 50] [--seconds 60] [--workers 4]

Each client is a thread with its own mailbox and cookie jar. It signs in through
the form (Dovecot checks the password), then loops: dashboard, forwarding page,
a forwarding change, and every tenth round signs out and in again; the first
five clients are domain admins who also create and delete an alias each round.
Afterwards the database is compared with what the clients were told: every
user's forwarding is the last one saved, no alias that was deleted is left, no
row is duplicated. Prints latency percentiles per kind of request, throughput,
and the counts of 5xx answers and of inconsistencies (both must be 0).
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

import psycopg  # noqa: E402
import stack  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

from portal import migrate  # noqa: E402
from portal.passwords import hash_password  # noqa: E402

DB = "bench_load"
DOMAIN = "load.example"
PASSWORD = "load test password " + secrets.token_hex(4)
TOKEN = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Client:
    """One browser: cookies, CSRF tokens from the pages, timings by kind."""

    def __init__(self, base: str, ip: str, timings, statuses):
        self.base, self.ip, self.timings, self.statuses = base, ip, timings, statuses
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
                                                  _NoRedirect())

    def _open(self, kind: str, path: str, data: dict | None = None) -> tuple[int, str]:
        request = urllib.request.Request(self.base + path, headers={"X-Forwarded-For": self.ip},
                                         data=urllib.parse.urlencode(data).encode() if data is not None else None)
        started = time.perf_counter()
        try:
            with self.opener.open(request, timeout=60) as response:
                status, body = response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read().decode()
        self.timings[kind].append(time.perf_counter() - started)
        self.statuses[status] += 1
        return status, body

    def get(self, kind: str, path: str) -> tuple[int, str]:
        return self._open(kind, path)

    def submit(self, kind: str, page_body: str, path: str, **fields) -> int:
        token = TOKEN.search(page_body).group(1)
        return self._open(kind, path, {"csrf_token": token, **fields})[0]


def build(clients: int) -> None:
    stack.ensure_database(DB, fresh=True)
    with psycopg.connect(stack.database_url(DB), autocommit=True) as conn:
        migrate.upgrade(conn, report=lambda _: None)
        stored = hash_password(PASSWORD)
        domain_id = conn.execute("INSERT INTO virtual_domains (name) VALUES (%s) RETURNING id", (DOMAIN,)).fetchone()[0]
        for n in range(clients):
            conn.execute("INSERT INTO virtual_users (domain_id, email, password) VALUES (%s, %s, %s)",
                         (domain_id, f"user{n}@{DOMAIN}", stored))
        for n in range(min(5, clients)):
            conn.execute("INSERT INTO portal_roles (user_id, role, domain_id) SELECT id, 'domain_admin', %s"
                         " FROM virtual_users WHERE email = %s", (domain_id, f"user{n}@{DOMAIN}"))
        stack.grant_mail_reader(conn)


def run_client(n: int, base: str, deadline: float, timings, statuses, told: dict, lock: threading.Lock) -> None:
    address = f"user{n}@{DOMAIN}"
    client = Client(base, f"198.19.{n // 250}.{n % 250 + 1}", timings, statuses)

    def sign_in() -> bool:
        _, page = client.get("sign-in page", "/auth/login")
        return client.submit("sign-in", page, "/auth/login", address=address, password=PASSWORD) == 302

    if not sign_in():
        return
    round_ = 0
    while time.monotonic() < deadline:
        round_ += 1
        client.get("dashboard", "/")
        status, page = client.get("forwarding page", "/account/forwarding")
        if status != 200:
            continue
        target = f"fwd{n}-{round_}@elsewhere.example"
        keep = "y" if round_ % 2 else ""
        if client.submit("forwarding save", page, "/account/forwarding", destinations=target, keep_copy=keep) == 302:
            with lock:
                told[address] = sorted({target, *([address] if keep else [])})
        if n < 5:
            alias = f"t{n}-{round_}@{DOMAIN}"
            status, page = client.get("alias page", f"/admin/domains/{DOMAIN}/aliases/new")
            if status == 200 and client.submit("alias create", page, f"/admin/domains/{DOMAIN}/aliases/new",
                                               local_part=alias.partition("@")[0], destinations=address) == 302:
                status, page = client.get("alias page", f"/admin/domains/{DOMAIN}/aliases/{alias}/delete")
                if status == 200:
                    client.submit("alias delete", page, f"/admin/domains/{DOMAIN}/aliases/{alias}/delete")
        if round_ % 10 == 0:
            status, page = client.get("dashboard", "/")
            client.submit("sign-out", page, "/auth/logout")
            if not sign_in():
                return


def verify(told: dict) -> list[str]:
    problems = []
    with psycopg.connect(stack.database_url(DB), autocommit=True, row_factory=dict_row) as conn:
        rows = conn.execute("SELECT source, destination FROM virtual_aliases ORDER BY 1, 2").fetchall()
        duplicates = conn.execute("SELECT source, destination, count(*) FROM virtual_aliases GROUP BY 1, 2"
                                  " HAVING count(*) > 1").fetchall()
    actual = defaultdict(list)
    for row in rows:
        actual[row["source"]].append(row["destination"])
    for address, wanted in told.items():
        if sorted(actual.get(address, [])) != wanted:
            problems.append(f"{address}: forwarding {actual.get(address)} but the client was told {wanted}")
    left = [s for s in actual if s.startswith("t") and "@" + DOMAIN in s]
    problems += [f"alias {s} was deleted but is still there" for s in left]
    problems += [f"duplicated row {r}" for r in duplicates]
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    stack.ensure_cluster()
    stack.ensure_roles()
    build(args.clients)
    dovecot = stack.Instance("bench", DB, imap_port=14143, lmtp_port=14024, smtp_port=14025)
    stack.render_dovecot(dovecot)
    stack.start_dovecot(dovecot, restart=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env.update(PORTAL_DATABASE_URL=stack.database_url(DB), PORTAL_SECRET_KEY=secrets.token_hex(32),
               PORTAL_IMAP_HOST="127.0.0.1", PORTAL_IMAP_PORT=str(dovecot.imap_port), PORTAL_IMAP_SECURITY="plain",
               PORTAL_COOKIE_SECURE="false", PORTAL_TRUSTED_PROXY_COUNT="1", PORTAL_LOG_LEVEL="WARNING",
               PORTAL_DB_POOL_MAX_SIZE="8", PORTAL_LOGIN_CLIENT_MAX_FAILURES="1000",
               # The admins sign in with their password alone (bench/second_factor.py measures the second step).
               PORTAL_SECOND_FACTOR_REQUIRED_ROLES="")
    server = subprocess.Popen([str(ROOT / ".venv/bin/gunicorn"), "--config", "config/gunicorn.conf.py",
                               "--workers", str(args.workers), "--bind", f"127.0.0.1:{port}", "app:app"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=2).close()  # noqa: S310 - loopback
                break
            except OSError:
                time.sleep(0.2)
        timings, statuses, told, lock = defaultdict(list), defaultdict(int), {}, threading.Lock()
        started = time.monotonic()
        deadline = started + args.seconds
        threads = [threading.Thread(target=run_client, args=(n, base, deadline, timings, statuses, told, lock))
                   for n in range(args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
    finally:
        server.terminate()
        server.wait(timeout=20)
        stack.stop_dovecot(dovecot)
    problems = verify(told)
    stack.drop_database(DB)
    total = sum(statuses.values())
    result = {
        "clients": args.clients, "seconds": round(elapsed, 1), "workers": args.workers, "cpus": os.cpu_count(),
        "requests": total, "per_second": round(total / elapsed, 1),
        "statuses": dict(sorted(statuses.items())),
        "server_errors": sum(c for s, c in statuses.items() if s >= 500),
        "inconsistencies": problems[:20], "inconsistency_count": len(problems),
        "latency_ms": {kind: {"n": len(v), "p50": round(statistics.median(v) * 1000, 1),
                              "p95": round(sorted(v)[int(0.95 * (len(v) - 1))] * 1000, 1),
                              "p99": round(sorted(v)[int(0.99 * (len(v) - 1))] * 1000, 1)}
                       for kind, v in sorted(timings.items())},
    }
    print(json.dumps(result, indent=2))
    return 0 if result["server_errors"] == 0 and not problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
