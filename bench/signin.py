"""Sign-in latency through gunicorn against the real Dovecot and PostgreSQL.

Run as root (it brings up the dev stack):  .venv/bin/python bench/signin.py

For each IMAP transport security mode the portal offers (plain, starttls, tls),
with login_trusted_networks as shipped:

1. p50/p95 of the full sign-in POST (CSRF form already loaded; POST to the 302),
   N sequential sign-ins of different mailboxes.
2. The password check alone, the portal's ``imap.authenticate`` (connect, ID,
   AUTHENTICATE PLAIN, LOGOUT) against a bare imaplib ``LOGIN`` (connect, LOGIN,
   LOGOUT) over the same transport to the same Dovecot, interleaved in one run.
3. p50/p95 of client B's valid sign-ins while client A fails continuously, the
   two told apart by X-Forwarded-For behind one trusted proxy, as behind nginx.
   The portal's own throttle is raised out of the way so that A keeps reaching
   Dovecot: what is measured is Dovecot's auth penalty landing on A, not on B.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import imaplib
import json
import os
import re
import secrets
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

import stack  # noqa: E402

BENCH_DOMAIN = "bench.example"
_CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Browser:
    """A cookie-keeping HTTP client that does not follow redirects."""

    def __init__(self, base: str, client_ip: str):
        self.base = base
        self.client_ip = client_ip
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _NoRedirect()
        )

    def request(self, path: str, data: dict | None = None) -> tuple[int, str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(self.base + path, data=body, headers={"X-Forwarded-For": self.client_ip})
        try:
            with self.opener.open(req, timeout=60) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def timed_sign_in(self, address: str, password: str) -> tuple[int, float]:
        """Load the form, then time the POST alone; return (status, seconds)."""
        status, page = self.request("/auth/login")
        token = _CSRF.search(page).group(1)
        started = time.perf_counter()
        status, _ = self.request("/auth/login", {"csrf_token": token, "address": address, "password": password})
        return status, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict:
    ms = [v * 1000 for v in values]
    return {"n": len(ms), "p50_ms": round(statistics.median(ms), 1), "p95_ms": round(percentile(ms, 0.95), 1),
            "max_ms": round(max(ms), 1)}


def make_mailboxes(instance, count: int) -> dict[str, str]:
    import psycopg
    from psycopg.rows import dict_row

    from portal.passwords import hash_password
    from portal.queries import domains
    from portal.queries import mailboxes

    accounts = {f"user{n}@{BENCH_DOMAIN}": secrets.token_urlsafe(16) for n in range(count)}
    with psycopg.connect(stack.database_url(instance.db_name), autocommit=True, row_factory=dict_row) as conn:
        with conn.transaction():
            domain_id = domains.ensure_domain(conn, BENCH_DOMAIN)
            for address, password in accounts.items():
                mailboxes.upsert_mailbox(conn, domain_id, address, hash_password(password))
            conn.execute("DELETE FROM portal_login_throttle")
    return accounts


def imap_settings(instance, security: str) -> dict[str, str]:
    """The portal's IMAP settings for one transport security mode against the stack's Dovecot."""
    port = instance.imaps_port if security == "tls" else instance.imap_port
    return {"IMAP_SECURITY": security, "IMAP_PORT": str(port), "IMAP_TLS_CA_FILE": str(instance.tls_cert)}


def start_portal(instance, workers: int | None, imap: dict[str, str] | None = None,
                 gunicorn_args: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str]:
    """Start gunicorn with the shipped config (``workers`` None: its own default) on a free port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env.update(
        PORTAL_CONFIG=str(stack.write_portal_config(instance)),
        PORTAL_TRUSTED_PROXY_COUNT="1",
        PORTAL_LOGIN_CLIENT_MAX_FAILURES="1000000",
        PORTAL_LOGIN_ACCOUNT_MAX_FAILURES="1000000",
    )
    env.update({f"PORTAL_{name}": value for name, value in (imap or {}).items()})
    server = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "gunicorn", "--config", "config/gunicorn.conf.py",
         *(["--workers", str(workers)] if workers else []), *gunicorn_args,
         "--bind", f"127.0.0.1:{port}", "--access-logfile", "/dev/null", "app:app"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=5):  # noqa: S310
                return server, base
        except OSError:
            if time.monotonic() > deadline:
                server.kill()
                raise RuntimeError("gunicorn did not start") from None
            time.sleep(0.2)


def bench_latency(base: str, accounts: dict[str, str], rounds: int) -> dict:
    timings = []
    items = list(accounts.items())
    for n in range(rounds):
        address, password = items[n % len(items)]
        status, seconds = Browser(base, f"198.19.1.{n % 250 + 1}").timed_sign_in(address, password)
        assert status == 302, status
        timings.append(seconds)
    return summary(timings)


def bare_login(instance, security: str, address: str, password: str) -> None:
    """One imaplib LOGIN conversation, the cheapest password check IMAP offers, over ``security``."""
    context = ssl.create_default_context(cafile=str(instance.tls_cert))
    if security == "tls":
        client = imaplib.IMAP4_SSL("127.0.0.1", instance.imaps_port, ssl_context=context, timeout=10)
    else:
        client = imaplib.IMAP4("127.0.0.1", instance.imap_port, timeout=10)
        if security == "starttls":
            client.starttls(context)
    client.login(address, password)
    client.logout()


def bench_password_check(instance, security: str, accounts: dict[str, str], rounds: int) -> dict:
    """The portal's password check against a bare LOGIN, alternating, so both see the same Dovecot."""
    from portal import create_app
    from portal import imap

    config = create_app({"SECRET_KEY": secrets.token_hex(32), "DATABASE_URL": stack.database_url(instance.db_name),
                         **imap_settings(instance, security)}).config
    portal_timings, bare_timings = [], []
    items = list(accounts.items())
    for n in range(rounds):
        address, password = items[n % len(items)]
        started = time.perf_counter()
        assert imap.authenticate(config, address, password, f"198.19.3.{n % 250 + 1}")
        portal_timings.append(time.perf_counter() - started)
        started = time.perf_counter()
        bare_login(instance, security, address, password)
        bare_timings.append(time.perf_counter() - started)
    portal, bare = summary(portal_timings), summary(bare_timings)
    return {"portal_authenticate_plain": portal, "bare_imaplib_login": bare,
            "p50_difference_ms": round(portal["p50_ms"] - bare["p50_ms"], 1)}


def bench_isolation(base: str, accounts: dict[str, str], seconds: float) -> dict:
    items = list(accounts.items())
    victim_address = items[0][0]
    stop = threading.Event()
    attacker_timings: list[float] = []

    def attack():
        browser = Browser(base, "198.19.66.66")
        while not stop.is_set():
            # A new guess each time: Dovecot does not raise the penalty for a repeated password.
            status, took = browser.timed_sign_in(victim_address, secrets.token_hex(8))
            assert status == 200, status
            attacker_timings.append(took)

    attacker = threading.Thread(target=attack)
    attacker.start()
    time.sleep(3)  # let the penalty build up on A's address
    timings = []
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        address, password = items[1 + n % (len(items) - 1)]
        status, took = Browser(base, f"198.19.2.{n % 250 + 1}").timed_sign_in(address, password)
        assert status == 302, status
        timings.append(took)
        n += 1
        time.sleep(0.5)
    stop.set()
    attacker.join()
    return {"client_b_valid": summary(timings), "client_a_failing": summary(attacker_timings)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--isolation-seconds", type=float, default=20)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--security", default="plain,starttls,tls",
                        help="the IMAP transport security modes to measure, comma-separated")
    parser.add_argument(
        "--untrusted", action="store_true",
        help="also measure isolation against a Dovecot that does not trust the portal (login_trusted_networks "
        "empty), which ignores the forwarded client address: the situation the portal's setting avoids",
    )
    args = parser.parse_args()

    instance = stack.up(stack.INSTANCES["dev"])
    accounts = make_mailboxes(instance, 50)
    results: dict = {"workers": args.workers, "cpus": os.cpu_count()}
    for security in args.security.split(","):
        server, base = start_portal(instance, args.workers, imap_settings(instance, security))
        try:
            Browser(base, "198.19.0.1").timed_sign_in(*next(iter(accounts.items())))  # warm up
            results[security] = {
                "signin_post": bench_latency(base, accounts, args.rounds),
                "password_check": bench_password_check(instance, security, accounts, args.rounds),
                "isolation": bench_isolation(base, accounts, args.isolation_seconds),
            }
        finally:
            server.terminate()
            server.wait(timeout=10)
    if args.untrusted:
        untrusted = stack.Instance("untrusted", instance.db_name, imap_port=13143, lmtp_port=13024, smtp_port=13025)
        stack.render_dovecot(untrusted, portal_networks="")
        stack.start_dovecot(untrusted, restart=True)
        server, base = start_portal(instance, args.workers, {"IMAP_PORT": str(untrusted.imap_port)})
        try:
            results["isolation_without_trusted_networks"] = bench_isolation(base, accounts, args.isolation_seconds)
        finally:
            server.terminate()
            server.wait(timeout=10)
            stack.stop_dovecot(untrusted)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
