"""Checking a mailbox password through Dovecot, with the portal's own throttling."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from . import imap
from . import passwords
from .clientaddr import throttle_key
from .queries import mailboxes
from .queries import sessions as session_queries
from .queries import throttle

# Roughly one check in this many also sweeps expired throttle and session rows,
# so that neither table grows without bound under a stream of made-up addresses.
_PURGE_ONE_IN = 200


@dataclass(frozen=True)
class Outcome:
    """What came of a password check."""

    status: str  # "ok", "invalid", "locked" or "disabled"
    mailbox: dict | None = None
    locked_until: datetime | None = None


def _limits(config) -> dict[str, int]:
    return {
        "pair": int(config["LOGIN_ACCOUNT_MAX_FAILURES"]),
        "account": int(config["LOGIN_ACCOUNT_ALL_CLIENTS_MAX_FAILURES"]),
        "client": int(config["LOGIN_CLIENT_MAX_FAILURES"]),
    }


def _temporary_password_matches(conn, address: str, password: str) -> bool:
    """Whether ``password`` is the mailbox's one-time password, which Dovecot refuses to mail clients.

    A password someone other than the owner has seen (a helpdesk reset, one an
    admin set and did not mark final) is stored with ``password_must_change``;
    Dovecot's shipped password_query refuses such rows, so the portal checks it
    here, and only for the sign-in that forces the owner to choose a new one.
    """
    stored = mailboxes.temporary_password_hash(conn, address)
    return stored is not None and passwords.verify_password(password, stored)


def check_password(conn, config, address: str, password: str, client_addr: str | None) -> Outcome:
    """Verify a canonical address and password with Dovecot, counting attempts.

    Failures are counted, before Dovecot is asked, per account and client
    (IPv4 address or IPv6 /64) pair, per client, and per account from all
    clients together; each is taken back when it was not a failure. Past a
    limit, that pair, client or account is locked for a fixed time: a guesser
    locks out only himself, and the owner, signing in from elsewhere, gets in,
    unless many addresses together guess at one account. An attempt refused by a
    lock never reaches Dovecot, is not counted and does not extend the lock.
    Raises :class:`portal.imap.ImapUnavailable` when Dovecot cannot answer; that
    does not count. Unknown addresses and wrong passwords go the same way.
    """
    window = timedelta(seconds=int(config["LOGIN_FAILURE_WINDOW"]))
    lockout = timedelta(seconds=int(config["LOGIN_LOCKOUT"]))
    limits = _limits(config)
    client_key = throttle_key(client_addr)
    keys = [("pair", f"{address}|{client_key or '-'}"), ("account", address)]
    if client_key:
        keys.append(("client", client_key))

    def take_back() -> None:
        with conn.transaction():
            for kind, key in keys:
                throttle.undo_attempt(conn, kind, key)

    with conn.transaction():
        counts = {kind: throttle.begin_attempt(conn, kind, key, window) for kind, key in keys}
    locked = [until for _, until in counts.values() if until is not None]
    if locked:
        take_back()
        return Outcome("locked", locked_until=max(locked))
    over = [(kind, key) for kind, key in keys if counts[kind][0] > limits[kind]]
    if over:  # parallel guesses past a limit, before any of them was answered
        with conn.transaction():
            until = max(throttle.lock(conn, kind, key, lockout) for kind, key in over)
        take_back()
        return Outcome("locked", locked_until=until)

    try:
        accepted = imap.authenticate(config, address, password, client_addr)
        if not accepted:
            accepted = _temporary_password_matches(conn, address, password)
    except imap.ImapUnavailable:
        take_back()
        raise

    if not accepted:
        reached = [(kind, key) for kind, key in keys if counts[kind][0] >= limits[kind]]
        if reached:
            with conn.transaction():
                for kind, key in reached:
                    throttle.lock(conn, kind, key, lockout)
        return Outcome("invalid")

    with conn.transaction():
        throttle.clear(conn, "pair", keys[0][1])
        throttle.clear(conn, "account", address)
        if client_key:
            throttle.undo_attempt(conn, "client", client_key)
        if random.randrange(_PURGE_ONE_IN) == 0:  # noqa: S311 - load spreading, not security
            throttle.purge_expired(conn, window)
            session_queries.delete_expired_sessions(
                conn,
                timedelta(seconds=int(config["SESSION_IDLE_TIMEOUT"])),
                timedelta(seconds=int(config["SESSION_ABSOLUTE_TIMEOUT"])),
            )
    mailbox = mailboxes.get_mailbox(conn, address)
    # Dovecot's own queries may not know about the portal's active flags yet.
    if mailbox is None or not mailbox["active"] or not mailbox["domain_active"]:
        return Outcome("disabled")
    return Outcome("ok", mailbox=mailbox)
