"""Checking a mailbox password through Dovecot, with the portal's own throttling."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from flask import current_app

from . import imap
from . import notices
from . import passwords
from .clientaddr import throttle_key
from .db import get_db
from .db import release_db
from .i18n import _
from .queries import mailboxes
from .queries import sessions as session_queries
from .queries import throttle

# Roughly one check in this many also sweeps expired throttle and session rows,
# so that neither table grows without bound under a stream of made-up addresses.
_PURGE_ONE_IN = 200


@dataclass(frozen=True)
class Outcome:
    """What came of a password check."""

    # "ok", "invalid", "locked", "disabled", or "client_busy" / "portal_busy" when
    # the check was not made because too many are waiting for Dovecot already.
    status: str
    mailbox: dict | None = None
    locked_until: datetime | None = None


# Seconds a client is told to wait when its sign-in was not checked because too many wait on Dovecot.
BUSY_RETRY_AFTER = 5


def busy_refusal(outcome: Outcome) -> tuple[str, int] | None:
    """The message and HTTP status for a check not made because too many wait on Dovecot, else None."""
    if outcome.status == "client_busy":
        return _("Another sign-in from your network is still being checked. Please try again in a few seconds."), 429
    if outcome.status == "portal_busy":
        return _("The portal is busy checking other sign-ins. Please try again in a few seconds."), 503
    return None


def init_app(app) -> None:
    """Give this worker process its cap on sign-ins waiting for Dovecot at once."""
    app.extensions["portal_sign_ins"] = threading.BoundedSemaphore(int(app.config["LOGIN_WORKER_MAX_IN_FLIGHT"]))


def _limits(config) -> dict[str, int]:
    return {
        "pair": int(config["LOGIN_ACCOUNT_MAX_FAILURES"]),
        "account": int(config["LOGIN_ACCOUNT_ALL_CLIENTS_MAX_FAILURES"]),
        "client": int(config["LOGIN_CLIENT_MAX_FAILURES"]),
        # Wrong codes of one account from all clients, which only a right second factor clears.
        "second_factor": int(config["LOGIN_ACCOUNT_MAX_FAILURES"]),
    }


def _longest_check(config) -> timedelta:
    # Connect, STARTTLS and ID at IMAP_TIMEOUT each, then the verdict at IMAP_AUTH_TIMEOUT.
    return timedelta(seconds=3 * float(config["IMAP_TIMEOUT"]) + float(config["IMAP_AUTH_TIMEOUT"]) + 5)


def _portal_checked_password_matches(conn, address: str, password: str) -> bool:
    """Whether ``password`` is a main password Dovecot refuses to mail clients, which the portal checks itself.

    A password someone other than the owner has seen (a helpdesk reset, one an
    admin set and did not mark final) is stored with ``password_must_change``;
    Dovecot's shipped password_query refuses such rows, so the portal checks it
    here, and only for the sign-in that forces the owner to choose a new one.
    So too the main password of a mailbox kept to app passwords in mail clients,
    where the portal signs in on a port mail clients use (its own listener lets
    Dovecot accept it there): slower, by Dovecot's failure delay, but it works.
    """
    stored = mailboxes.portal_checked_password_hash(conn, address)
    return stored is not None and passwords.verify_password(password, stored)


def _is_an_app_password(conn, address: str, password: str) -> bool:
    """Whether what Dovecot accepted is not the main password (so one of the mailbox's app passwords).

    App passwords are for mail clients, never for the portal. Dovecot refuses them on
    the portal's own IMAP listener; a portal that signs in on a port mail clients
    use cannot be told apart there, so for a mailbox with app passwords the portal
    compares the main password's hash itself (one hash more, for those mailboxes only).
    """
    stored = mailboxes.main_password_hash_beside_app_passwords(conn, address)
    return stored is not None and not passwords.verify_password(password, stored)


def check_password(address: str, password: str, client_addr: str | None) -> Outcome:
    """Verify a canonical address and password with Dovecot, counting attempts.

    Failures are counted, before Dovecot is asked, per account and client
    (IPv4 address or IPv6 /64) pair, per client, and per account from all
    clients together; each is taken back when it was not a failure. Past a
    limit, that pair, client or account is locked for a fixed time: a guesser
    locks out only himself, and the owner, signing in from elsewhere, gets in,
    unless many addresses together guess at one account. An attempt refused by a
    lock never reaches Dovecot, is not counted and does not extend the lock.

    Dovecot answers a failure only after a delay that grows per client (2 s up
    to 17 s), so few failing clients could hold every worker thread. A client
    may therefore wait on Dovecot with only LOGIN_CLIENT_MAX_IN_FLIGHT checks at
    once (across all workers), and a worker process with only
    LOGIN_WORKER_MAX_IN_FLIGHT; past either the check is not made ("client_busy",
    "portal_busy") and nothing is counted. While Dovecot is asked, the request
    holds no database connection.

    Raises :class:`portal.imap.ImapUnavailable` when Dovecot cannot answer; that
    does not count. Unknown addresses and wrong passwords go the same way.
    """
    config = current_app.config
    client_key = throttle_key(client_addr)
    if not client_key:
        return _check_in_worker(config, address, password, client_addr)
    slot = throttle.take_sign_in_slot(get_db(), client_key, int(config["LOGIN_CLIENT_MAX_IN_FLIGHT"]),
                                      _longest_check(config))
    if slot is None:
        return Outcome("client_busy")
    try:
        return _check_in_worker(config, address, password, client_addr)
    finally:
        throttle.give_back_sign_in_slot(get_db(), client_key, *slot)


def _throttle_keys(address: str, client_key: str | None) -> list[tuple[str, str]]:
    keys = [("pair", f"{address}|{client_key or '-'}"), ("account", address)]
    if client_key:
        keys.append(("client", client_key))
    return keys


def _take_back(conn, keys: list[tuple[str, str]]) -> None:
    with conn.transaction():
        for kind, key in keys:
            throttle.undo_attempt(conn, kind, key)


def _check_in_worker(config, address: str, password: str, client_addr: str | None) -> Outcome:
    """Hold one of this worker's sign-in slots for the duration of the check."""
    worker_sign_ins = current_app.extensions["portal_sign_ins"]
    if not worker_sign_ins.acquire(blocking=False):
        return Outcome("portal_busy")
    try:
        return _counted_check(config, address, password, client_addr)
    finally:
        worker_sign_ins.release()


def _begin(conn, config, keys: list[tuple[str, str]]) -> tuple[dict, Outcome | None]:
    """Count an attempt against each key before it is checked: (the counts, a "locked" outcome if it may not be)."""
    window = timedelta(seconds=int(config["LOGIN_FAILURE_WINDOW"]))
    lockout = timedelta(seconds=int(config["LOGIN_LOCKOUT"]))
    limits = _limits(config)
    counts = throttle.begin_attempts(conn, keys, window)  # one statement: atomic without a transaction
    locked = [until for _, until in counts.values() if until is not None]
    if locked:
        _take_back(conn, keys)
        return counts, Outcome("locked", locked_until=max(locked))
    over = [(kind, key) for kind, key in keys if counts[kind][0] > limits[kind]]
    if over:  # parallel guesses past a limit, before any of them was answered
        with conn.transaction():
            until = max(throttle.lock(conn, kind, key, lockout) for kind, key in over)
        _take_back(conn, keys)
        return counts, Outcome("locked", locked_until=until)
    return counts, None


def _failed(conn, config, keys: list[tuple[str, str]], counts: dict) -> Outcome:
    """A counted attempt failed: lock each key it took to its limit."""
    lockout = timedelta(seconds=int(config["LOGIN_LOCKOUT"]))
    limits = _limits(config)
    reached = [(kind, key) for kind, key in keys if counts[kind][0] >= limits[kind]]
    if reached:
        with conn.transaction():
            for kind, key in reached:
                throttle.lock(conn, kind, key, lockout)
    return Outcome("invalid")


def _succeeded(conn, config, address: str, keys: list[tuple[str, str]], client_key: str | None,
               second_factor: bool = False) -> None:
    """A counted attempt succeeded: the account's failures are forgotten (its wrong codes too, if it was a second
    factor), the client's attempt taken back."""
    window = timedelta(seconds=int(config["LOGIN_FAILURE_WINDOW"]))
    # Each statement stands alone (the counters are independent): no transaction, fewer round trips.
    throttle.clear_many(conn, [keys[0], ("account", address), *([("second_factor", address)] if second_factor
                                                                 else [])])
    if client_key:
        throttle.undo_attempt(conn, "client", client_key)
    if random.randrange(_PURGE_ONE_IN) == 0:  # noqa: S311 - load spreading, not security
        with conn.transaction():
            throttle.purge_expired(conn, window)
            session_queries.delete_expired_sessions(
                conn,
                timedelta(seconds=int(config["SESSION_IDLE_TIMEOUT"])),
                timedelta(seconds=int(config["SESSION_ABSOLUTE_TIMEOUT"])),
            )


def _counted_check(config, address: str, password: str, client_addr: str | None) -> Outcome:
    """Count the attempt, ask Dovecot, and lock or clear the counters by its answer."""
    client_key = throttle_key(client_addr)
    keys = _throttle_keys(address, client_key)
    conn = get_db()
    counts, refused = _begin(conn, config, keys)
    if refused:
        return refused

    # Dovecot may take seconds to answer a failure: hold no pooled connection meanwhile.
    release_db()
    try:
        accepted = imap.authenticate(config, address, password, client_addr)
    except imap.ImapUnavailable:
        _take_back(get_db(), keys)
        raise
    conn = get_db()
    if accepted:
        accepted = not _is_an_app_password(conn, address, password)
    else:
        accepted = _portal_checked_password_matches(conn, address, password)
    if not accepted:
        return _failed(conn, config, keys, counts)
    _succeeded(conn, config, address, keys, client_key)
    mailbox = mailboxes.get_mailbox(conn, address)
    # Dovecot's own queries may not know about the portal's active flags yet.
    if mailbox is None or not mailbox["active"] or not mailbox["domain_active"]:
        return Outcome("disabled")
    return Outcome("ok", mailbox=mailbox)


def check_second_factor(mailbox: dict, client_addr: str | None, check) -> Outcome:
    """Count a second-factor attempt as a password attempt (the same keys, limits and locks), and against the
    account's second-factor count, which a right password does not clear (LOGIN_ACCOUNT_MAX_FAILURES wrong codes
    from all clients lock the second step for LOGIN_LOCKOUT); make it with ``check(conn)`` (True: the factor
    holds). "ok", "invalid" or "locked".

    The wrong code that locks the second step also warns the owner by mail: it came after the right password."""
    config = current_app.config
    address = mailbox["email"]
    client_key = throttle_key(client_addr)
    # The password's keys, and one of the account's own that a right password does not clear.
    keys = [*_throttle_keys(address, client_key), ("second_factor", address)]
    conn = get_db()
    counts, refused = _begin(conn, config, keys)
    if refused:
        return refused
    if not check(conn):
        outcome = _failed(conn, config, keys, counts)
        failures = counts["second_factor"][0]
        if failures == _limits(config)["second_factor"]:  # this attempt locked it: once per lock
            until = throttle.state(conn, "second_factor", address)["locked_until"]
            with conn.transaction():
                notices.queue(conn, mailbox, "second_step_locked", notices.second_step_locked, address, failures,
                              until, client_addr)
        return outcome
    _succeeded(conn, config, address, keys, client_key, second_factor=True)
    return Outcome("ok")
