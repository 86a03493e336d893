"""What a second factor adds to a sign-in, through gunicorn against the real Dovecot and PostgreSQL.

Run as root (it brings up the dev stack):  .venv/bin/python bench/second_factor.py

Mailboxes with a confirmed TOTP app (and mail clients kept to app passwords, as
enrolling sets it, so the portal checks their password on its own IMAP listener)
and mailboxes without one sign in alternately, each once (a TOTP code is used
once). Timed, as in bench/signin.py, from the POST to its 302:

- the password step without a second factor;
- the password step with one (it also reads whether there is one);
- the second step (the code checked, counted like a password, the session started).

What the second factor adds: the second step, plus the difference of the two
password steps.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts"), str(ROOT / "bench")]

import stack  # noqa: E402
from signin import Browser  # noqa: E402
from signin import start_portal  # noqa: E402
from signin import summary  # noqa: E402

DOMAIN = "second-factor.bench.example"
_CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def make_accounts(instance, count: int) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """(address -> password) without a second factor, (address -> (password, TOTP secret)) with one."""
    import psycopg
    import pyotp
    from psycopg.rows import dict_row

    from portal.passwords import hash_password
    from portal.queries import domains
    from portal.queries import mailboxes

    plain = {f"plain{n}@{DOMAIN}": secrets.token_urlsafe(16) for n in range(count)}
    enrolled = {f"totp{n}@{DOMAIN}": (secrets.token_urlsafe(16), pyotp.random_base32(32)) for n in range(count)}
    with psycopg.connect(stack.database_url(instance.db_name), autocommit=True, row_factory=dict_row) as conn:
        with conn.transaction():
            domain_id = domains.ensure_domain(conn, DOMAIN)
            for address, password in plain.items():
                mailboxes.upsert_mailbox(conn, domain_id, address, hash_password(password))
            for address, (password, secret) in enrolled.items():
                mailbox_id = mailboxes.upsert_mailbox(conn, domain_id, address, hash_password(password))
                conn.execute("INSERT INTO portal_totp (mailbox_id, secret, confirmed_at) VALUES (%s, %s, now())"
                             " ON CONFLICT (mailbox_id) DO UPDATE SET secret = excluded.secret, last_step = 0,"
                             " confirmed_at = now()", (mailbox_id, secret))
                conn.execute("INSERT INTO portal_mailbox_settings (mailbox_id, mail_clients_use_app_passwords)"
                             " VALUES (%s, true) ON CONFLICT (mailbox_id) DO UPDATE"
                             " SET mail_clients_use_app_passwords = true", (mailbox_id,))
            conn.execute("DELETE FROM portal_login_throttle")
    return plain, enrolled


def timed_post(browser: Browser, path: str, data: dict) -> tuple[int, float]:
    _status, page = browser.request(path)
    token = _CSRF.search(page).group(1)
    started = time.perf_counter()
    status, _ = browser.request(path, {"csrf_token": token, **data})
    return status, time.perf_counter() - started


def main() -> int:
    import pyotp

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200, help="sign-ins of each kind (each mailbox once)")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()

    instance = stack.up(stack.INSTANCES["dev"])
    plain, enrolled = make_accounts(instance, args.rounds)
    server, base = start_portal(instance, args.workers)
    password_plain, password_enrolled, second_step, whole = [], [], [], []
    try:
        warm = Browser(base, "198.19.9.1")
        timed_post(warm, "/auth/login", {"address": next(iter(plain)), "password": next(iter(plain.values()))})
        for n, ((address, password), (address2, (password2, secret))) in enumerate(
                zip(plain.items(), enrolled.items(), strict=True)):
            status, took = timed_post(Browser(base, f"198.19.10.{n % 250 + 1}"), "/auth/login",
                                      {"address": address, "password": password})
            assert status == 302, status
            password_plain.append(took)
            browser = Browser(base, f"198.19.11.{n % 250 + 1}")
            status, took = timed_post(browser, "/auth/login", {"address": address2, "password": password2})
            assert status == 302, status
            password_enrolled.append(took)
            status, took = timed_post(browser, "/auth/second-factor", {"code": pyotp.TOTP(secret).now()})
            assert status == 302, status
            second_step.append(took)
            whole.append(password_enrolled[-1] + took)
    finally:
        server.terminate()
        server.wait(timeout=10)
    results = {"workers": args.workers, "cpus": os.cpu_count(),
               "password_step_without_second_factor": summary(password_plain),
               "password_step_with_second_factor": summary(password_enrolled),
               "second_step": summary(second_step),
               "both_steps": summary(whole)}
    # What a second factor adds at p95: both steps of a sign-in with one, against the one step without.
    results["added_p95_ms"] = round(results["both_steps"]["p95_ms"]
                                    - results["password_step_without_second_factor"]["p95_ms"], 1)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
