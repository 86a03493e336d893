"""Admin list pages at 10k domains, 500k mailboxes and 1M aliases, under 8 concurrent clients.

Run as root (uses the stack's PostgreSQL; starts its own Dovecot and gunicorn):
    .venv/bin/python bench/admin_lists.py

Builds ``bench_lists`` with the portal's schema. 40 % of the mailboxes and aliases
belong to one large domain (d1.example: 200,000 mailboxes, 400,000 aliases), the
rest are spread over 10,000 domains. A superadmin signs in through a Dovecot on
that database; 8 client threads then request a mix of list and search pages from
gunicorn (the first page, a page deep in the list through its cursor, prefix
and substring searches, the overview and the filtered lists it leads to).
p50/p95/p99 per kind of page. With wrk installed
(``apt-get install wrk``) each page is driven by wrk with 8 connections for
``--seconds`` each; otherwise (or with ``--threads``) by 8 Python threads
sharing the mix, whose own CPU use then weighs on the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts"), str(ROOT / "bench")]

import psycopg  # noqa: E402
import stack  # noqa: E402
from dataset import created_at  # noqa: E402
from dataset import generate  # noqa: E402
from dataset import generate_usage  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402
from signin import Browser  # noqa: E402

from portal import migrate  # noqa: E402
from portal.passwords import hash_password  # noqa: E402

DB = "bench_lists"
ADMIN = "root@d1.example"


def reuse() -> str:
    """Keep the data set of an earlier --keep run; give the superadmin a new password."""
    password = secrets.token_urlsafe(16)
    with psycopg.connect(stack.database_url(DB), autocommit=True) as conn:
        migrate.upgrade(conn, report=lambda _: None)  # the code under test may have new migrations
        if conn.execute("SELECT NOT EXISTS (SELECT 1 FROM portal_quota_usage)").fetchone()[0]:
            generate_usage(conn)  # a data set kept from before the overview's states were part of it
            settle(conn)
        conn.execute("UPDATE virtual_users SET password = %s WHERE email = %s", (hash_password(password), ADMIN))
        conn.execute("DELETE FROM portal_login_throttle")
    return password


def build(sizes: tuple[int, int, int], big_share: float) -> tuple[float, str]:
    stack.ensure_database(DB, fresh=True)
    password = secrets.token_urlsafe(16)
    with psycopg.connect(stack.database_url(DB), autocommit=True, row_factory=dict_row) as conn:
        migrate.upgrade(conn, report=lambda _: None)
        seconds = generate(conn, *sizes, big_share=big_share)
        seconds += generate_usage(conn)
        row = conn.execute(
            "INSERT INTO virtual_users (domain_id, email, password) VALUES (1, %s, %s) RETURNING id",
            (ADMIN, hash_password(password)),
        ).fetchone()
        conn.execute("INSERT INTO portal_roles (user_id, role) VALUES (%s, 'superadmin')", (row["id"],))
        stack.grant_mail_reader(conn)
        settle(conn)
    return seconds, password


def settle(conn) -> None:
    """Leave the data set as a server that loaded it long ago has it: vacuumed, analysed, written out.

    Otherwise autovacuum and the checkpointer work through the bulk load's dead rows and dirty pages
    while the pages are timed (a run straight after loading the usage figures was 4 to 10 times slower)."""
    conn.execute("VACUUM ANALYZE")
    stack.psql_as_superuser("CHECKPOINT")


def add_data_set_arguments(parser: argparse.ArgumentParser) -> None:
    """The data set's sizes, the clients, and --keep/--reuse: the same for every bench that shares ``bench_lists``."""
    parser.add_argument("--domains", type=int, default=10_000)
    parser.add_argument("--mailboxes", type=int, default=500_000)
    parser.add_argument("--aliases", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--reuse", action="store_true", help="use the database an earlier --keep run left")


def start_gunicorn(imap_port: int, workers: int, **settings: str) -> tuple[subprocess.Popen, str]:
    """gunicorn with the shipped config on the bench database (``settings``: more PORTAL_* variables)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env.update(
        PORTAL_DATABASE_URL=stack.database_url(DB), PORTAL_SECRET_KEY=secrets.token_hex(32),
        PORTAL_IMAP_PORT=str(imap_port), PORTAL_IMAP_SECURITY="plain", PORTAL_COOKIE_SECURE="false",
        PORTAL_TRUSTED_PROXY_COUNT="1",
        # The measured admins sign in with their password alone (bench/second_factor.py measures the second step).
        PORTAL_SECOND_FACTOR_REQUIRED_ROLES="", **settings,
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", "config/gunicorn.conf.py", "--workers", str(workers),
         "--bind", f"127.0.0.1:{port}", "--access-logfile", "/dev/null", "app:app"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=5):
                return server, base
        except OSError:
            if time.monotonic() > deadline:
                server.kill()
                raise RuntimeError("gunicorn did not start") from None
            time.sleep(0.2)


def _deep(path: str, cursor: list, **params) -> str:
    """A page far into a list: the cursor the list itself would have put in its Next link."""
    return path + "?" + urllib.parse.urlencode({**params, "after": json.dumps(cursor, separators=(",", ":"))})


def page_mix() -> dict[str, str]:
    big = "/admin/domains/d1.example"
    newest_deep = [created_at(100_000).isoformat(), 100_000]
    return {
        "domain list, first page": "/admin/domains",
        "domain list, deep page": _deep("/admin/domains", ["d5000.example"]),
        "domain list by most mailboxes": "/admin/domains?sort=mailboxes",
        "domain prefix search": "/admin/domains?q=d123&mode=prefix",
        "mailbox list, first page": f"{big}/mailboxes",
        "mailbox list, deep page": _deep(f"{big}/mailboxes", ["u150000@d1.example"]),
        "mailbox list newest first, deep page": _deep(f"{big}/mailboxes", newest_deep, sort="newest"),
        "mailbox prefix search": f"{big}/mailboxes?q=u1234&mode=prefix",
        "mailbox substring search": f"{big}/mailboxes?q=23456&mode=contains",
        "alias list, first page": f"{big}/aliases",
        "alias list, deep page": _deep(f"{big}/aliases", ["a300000@d1.example"]),
        "alias list Z to A, deep page": _deep(f"{big}/aliases", ["a300000@d1.example"], sort="address-desc"),
        "alias prefix search": f"{big}/aliases?q=a9876&mode=prefix",
        "alias substring search": f"{big}/aliases?q=98765&mode=contains",
        # Matches bunched together late in the order (u29..., after every u1... and u2...):
        # a walk of the sort index would read most of the domain before the first one.
        "mailbox substring search, bunched matches": f"{big}/mailboxes?q=u29&mode=contains",
        "mailbox substring search, no match": f"{big}/mailboxes?q=zzzz&mode=contains",
        "mailbox substring search, every row matches": f"{big}/mailboxes?q=example&mode=contains",
        "alias substring search, bunched matches": f"{big}/aliases?q=a29&mode=contains",
        "helpdesk substring search, bunched matches": "/helpdesk/?q=u29&mode=contains",
        "helpdesk substring search": "/helpdesk/?q=23456&mode=contains",
        "role list": "/admin/roles",
        # The overview of 10k domains, and the lists its figures lead to.
        "admin overview": "/admin/",
        "domains with mailboxes over 80 %": "/admin/domains?state=over-80",
        "domains near their limits": "/admin/domains?state=near-limits",
        "mailboxes over 80 %, first page": f"{big}/mailboxes?state=over-80",
        "mailboxes over 95 %, deep page": _deep(f"{big}/mailboxes", ["u150000@d1.example"], state="over-95"),
        "disabled mailboxes": f"{big}/mailboxes?state=disabled",
        "deleted mailboxes waiting for purge": "/admin/removals",
    }


def run_clients(base: str, password: str, clients: int, seconds: float) -> dict:
    pages = page_mix()
    timings: dict[str, list[float]] = {name: [] for name in pages}
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(n: int):
        browser = Browser(base, f"198.19.9.{n + 1}")
        status, _ = browser.timed_sign_in(ADMIN, password)
        if status != 302:
            errors.append(f"sign-in {status}")
            return
        names = list(pages)
        i = n
        while time.monotonic() < deadline:
            name = names[i % len(names)]
            started = time.perf_counter()
            status, body = browser.request(pages[name])
            took = time.perf_counter() - started
            with lock:
                if status != 200:
                    errors.append(f"{name}: {status}")
                else:
                    timings[name].append(took)
            i += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result = {}
    for name, values in timings.items():
        ms = sorted(v * 1000 for v in values)
        if not ms:
            continue
        result[name] = {
            "n": len(ms),
            "p50_ms": round(statistics.median(ms), 1),
            "p95_ms": round(ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))], 1),
            "p99_ms": round(ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))], 1),
        }
    total = sum(r["n"] for r in result.values())
    return {"pages": result, "requests": total, "per_second": round(total / seconds, 1), "errors": errors[:10],
            "error_count": len(errors)}


def run_single(base: str, browser: Browser, rounds: int) -> dict:
    """One client, each page ``rounds`` times after a warm-up: the median a person waiting on it sees."""
    results = {}
    errors = []
    for name, path in page_mix().items():
        browser.request(path)
        timings = []
        for _ in range(rounds):
            started = time.perf_counter()
            status, _ = browser.request(path)
            timings.append((time.perf_counter() - started) * 1000)
            if status != 200:
                errors.append(f"{name}: {status}")
        results[name] = {"n": rounds, "median_ms": round(statistics.median(timings), 1),
                         "max_ms": round(max(timings), 1)}
    return {"pages": results, "errors": errors[:10], "error_count": len(errors)}


_WRK_REPORT = """
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d %d\\n", summary.requests, summary.errors.status,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), summary.duration))
end
"""


def run_wrk(base: str, browser: Browser, connections: int, seconds: float) -> dict:
    """Drive each page with wrk (a C load generator, so the client does not compete for the GIL)."""
    cookie = "; ".join(f"{c.name}={c.value}" for c in _cookie_jar(browser))
    results = {}
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(_WRK_REPORT)
        script.flush()
        for name, path in page_mix().items():
            out = subprocess.run(
                ["wrk", "-t2", f"-c{connections}", f"-d{seconds:.0f}s", "-s", script.name,
                 "-H", f"Cookie: {cookie}", "-H", f"X-Forwarded-For: {browser.client_ip}", base + path],
                capture_output=True, text=True, check=True,
            ).stdout
            line = next(line for line in out.splitlines() if line.startswith("RESULT"))
            requests, bad, p50, p95, p99, duration_us = map(int, line.split()[1:])
            results[name] = {
                "n": requests, "non_2xx": bad, "p50_ms": round(p50 / 1000, 1), "p95_ms": round(p95 / 1000, 1),
                "p99_ms": round(p99 / 1000, 1), "per_second": round(requests / (duration_us / 1e6), 1),
            }
    return {"pages": results, "error_count": sum(r["non_2xx"] for r in results.values())}


def _cookie_jar(browser: Browser):
    for handler in browser.opener.handlers:
        if isinstance(handler, urllib.request.HTTPCookieProcessor):
            return handler.cookiejar
    return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_set_arguments(parser)
    parser.add_argument("--seconds", type=float, default=60, help="in all (threads) or per page (wrk)")
    parser.add_argument("--threads", action="store_true",
                        help="use Python client threads even where wrk is installed (apt-get install wrk)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--big-share", type=float, default=0.4,
                        help="the share of mailboxes and aliases in the large domain d1.example")
    parser.add_argument("--single", type=int, metavar="N", default=0,
                        help="instead of load: one client, each page N times, medians (as a person waiting sees)")
    args = parser.parse_args()

    stack.ensure_cluster()
    stack.ensure_roles()
    if args.reuse:
        seconds, password = 0.0, reuse()
    else:
        seconds, password = build((args.domains, args.mailboxes, args.aliases), args.big_share)
    dovecot = stack.Instance("bench", DB, imap_port=14143, lmtp_port=14024, smtp_port=14025)
    stack.render_dovecot(dovecot)
    stack.start_dovecot(dovecot, restart=True)
    server, base = start_gunicorn(dovecot.imap_port, args.workers)
    try:
        if args.single:
            browser = Browser(base, "198.19.9.1")
            if browser.timed_sign_in(ADMIN, password)[0] != 302:
                raise RuntimeError("the superadmin could not sign in")
            results = run_single(base, browser, args.single)
            results["load_generator"] = "one client"
        elif shutil.which("wrk") and not args.threads:
            browser = Browser(base, "198.19.9.1")
            if browser.timed_sign_in(ADMIN, password)[0] != 302:
                raise RuntimeError("the superadmin could not sign in")
            results = run_wrk(base, browser, args.clients, args.seconds)
            results["load_generator"] = "wrk"
        else:
            results = run_clients(base, password, args.clients, args.seconds)
            results["load_generator"] = "python threads"
    finally:
        server.terminate()
        server.wait(timeout=10)
        stack.stop_dovecot(dovecot)
        if not args.keep:
            stack.drop_database(DB)
    results.update(
        sizes={"domains": args.domains, "mailboxes": args.mailboxes, "aliases": args.aliases,
               "big_share": args.big_share},
        generate_seconds=round(seconds, 1), clients=args.clients, workers=args.workers, cpus=os.cpu_count(),
    )
    print(json.dumps(results, indent=2))
    return 0 if results["error_count"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
