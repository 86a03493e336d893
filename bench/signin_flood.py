"""A sign-in flood: do other users' sign-ins and /healthz stay fast while 50 clients keep failing?

Run as root (it brings up the dev stack):  .venv/bin/python bench/signin_flood.py

gunicorn runs with the shipped ``config/gunicorn.conf.py`` behind one simulated
trusted proxy (``X-Forwarded-For``), against the stack's real Dovecot and
PostgreSQL. Then:

1. 50 attacking clients, each from its own address, keep sending failing
   sign-ins (a new wrong password each time, to mailboxes picked at random),
   each with ``--attacker-concurrency`` requests at once, from processes of
   their own (so that their threads do not slow the measuring process). The portal's own
   lockout is raised out of the way, so every guess reaches Dovecot and waits
   out its failure delay and auth penalty (2 s growing to 15 s per address): the
   worst case, as if the attackers had endless addresses.
2. After ``--ramp`` seconds (for the penalties to build up), for ``--seconds``
   seconds: a valid sign-in from a fresh address, and a ``GET /healthz``, each
   every ``--interval`` seconds, in their own threads. Their p50/p95/max and
   status codes are the result; so is what the attackers got.
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing
import os
import random
import secrets
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import signin  # noqa: E402
from signin import Browser  # noqa: E402
from signin import stack  # noqa: E402
from signin import summary  # noqa: E402


def timed_get(url: str) -> tuple[int, float]:
    """GET ``url``; return (status, seconds)."""
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - loopback bench
            response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    return status, time.perf_counter() - started


def attacker_process(base: str, victims: list[str], client_ips: list[str], concurrency: int,
                     ramp: float, seconds: float, results: multiprocessing.Queue) -> None:
    """Keep failing sign-ins going from ``client_ips``; report what came back while measuring."""
    statuses: collections.Counter = collections.Counter()
    times: list[float] = []
    started = time.monotonic()
    measure_from, stop_at = started + ramp, started + ramp + seconds

    def attack(client_ip: str) -> None:
        browser = Browser(base, client_ip)
        while time.monotonic() < stop_at:
            try:
                status, took = browser.timed_sign_in(random.choice(victims), secrets.token_hex(8))  # noqa: S311
            except OSError:
                status, took = "error", 0.0
            if time.monotonic() >= measure_from:
                statuses[str(status)] += 1
                times.append(took)

    threads = [threading.Thread(target=attack, args=(ip,)) for ip in client_ips for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put((dict(statuses), times))


def run_flood(base: str, accounts: dict[str, str], args) -> dict:
    """Run the attackers (in processes of their own, not to slow the measuring one) and the measured users."""
    victims = list(accounts)[: len(accounts) // 2]
    legit = list(accounts.items())[len(accounts) // 2:]
    addresses = [f"198.18.{n // 200}.{n % 200 + 1}" for n in range(args.attackers)]
    queue: multiprocessing.Queue = multiprocessing.Queue()
    attackers = [
        multiprocessing.Process(target=attacker_process, args=(
            base, victims, addresses[n::args.attacker_processes], args.attacker_concurrency, args.ramp,
            args.seconds, queue))
        for n in range(args.attacker_processes)
    ]
    for process in attackers:
        process.start()
    time.sleep(args.ramp)
    deadline = time.monotonic() + args.seconds
    signins: list[float] = []
    signin_statuses: collections.Counter = collections.Counter()
    health: list[float] = []
    health_statuses: collections.Counter = collections.Counter()

    def sign_in_loop() -> None:
        n = 0
        while time.monotonic() < deadline:
            address, password = legit[n % len(legit)]
            status, took = Browser(base, f"198.19.5.{n % 250 + 1}").timed_sign_in(address, password)
            signin_statuses[status] += 1
            signins.append(took)
            n += 1
            time.sleep(args.interval)

    def health_loop() -> None:
        while time.monotonic() < deadline:
            status, took = timed_get(base + "/healthz")
            health_statuses[status] += 1
            health.append(took)
            time.sleep(args.interval)

    measured = [threading.Thread(target=sign_in_loop), threading.Thread(target=health_loop)]
    for thread in measured:
        thread.start()
    for thread in measured:
        thread.join()
    attacker_statuses: collections.Counter = collections.Counter()
    attacker_times: list[float] = []
    for _ in attackers:
        statuses, times = queue.get(timeout=120)
        attacker_statuses.update(statuses)
        attacker_times += times
    for process in attackers:
        process.join()
    return {
        "other_users_sign_in": {**summary(signins), "statuses": dict(signin_statuses)},
        "healthz": {**summary(health), "statuses": dict(health_statuses)},
        "attacking_clients": {
            **summary(attacker_times or [0.0]),
            "statuses": {str(k): v for k, v in attacker_statuses.items()},
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attackers", type=int, default=50, help="attacking client addresses")
    parser.add_argument("--attacker-concurrency", type=int, default=1, help="requests at once per attacking address")
    parser.add_argument("--attacker-processes", type=int, default=4, help="processes the attackers run in")
    parser.add_argument("--ramp", type=float, default=20, help="seconds of attack before measuring")
    parser.add_argument("--seconds", type=float, default=40, help="seconds of measuring")
    parser.add_argument("--interval", type=float, default=0.25, help="pause between measured requests")
    parser.add_argument("--workers", type=int, default=None, help="gunicorn workers (default: the shipped config's)")
    parser.add_argument(
        "--gunicorn-arg",
        action="append",
        default=[],
        help="an extra gunicorn argument, e.g. --gunicorn-arg=--worker-class=sync",
    )
    args = parser.parse_args()

    instance = stack.up(stack.INSTANCES["dev"])
    accounts = signin.make_mailboxes(instance, 60)
    server, base = signin.start_portal(instance, args.workers, gunicorn_args=tuple(args.gunicorn_arg))
    try:
        Browser(base, "198.19.0.1").timed_sign_in(*next(iter(accounts.items())))  # warm up
        results = {
            "cpus": os.cpu_count(),
            "attacking_addresses": args.attackers,
            "attacker_concurrency": args.attacker_concurrency,
            "gunicorn_args": args.gunicorn_arg,
            **run_flood(base, accounts, args),
        }
    finally:
        server.terminate()
        server.wait(timeout=20)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
