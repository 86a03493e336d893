"""Checking a mailbox password through Dovecot, with the portal's own throttling."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from . import imap
from .queries import mailboxes
from .queries import throttle


@dataclass(frozen=True)
class Outcome:
    """What came of a password check."""

    status: str  # "ok", "invalid", "locked" or "disabled"
    mailbox: dict | None = None
    locked_until: datetime | None = None


def _throttle_keys(address: str, client_addr: str | None) -> list[tuple[str, str]]:
    keys = [("account", address)]
    if client_addr:
        keys.append(("client", client_addr))
    return keys


def check_password(conn, config, address: str, password: str, client_addr: str | None) -> Outcome:
    """Verify a canonical address and password with Dovecot, counting failures.

    Raises :class:`portal.imap.ImapUnavailable` when Dovecot cannot answer; that
    is not counted as a failed attempt. Unknown addresses and wrong passwords go
    the same way through Dovecot and the counters, so they look the same.
    """
    until = throttle.locked_until(conn, _throttle_keys(address, client_addr))
    if until is not None:
        return Outcome("locked", locked_until=until)

    if not imap.authenticate(config, address, password, client_addr):
        window = timedelta(seconds=int(config["LOGIN_FAILURE_WINDOW"]))
        lockout = timedelta(seconds=int(config["LOGIN_LOCKOUT"]))
        with conn.transaction():
            throttle.record_failure(
                conn, "account", address, int(config["LOGIN_ACCOUNT_MAX_FAILURES"]), window, lockout
            )
            if client_addr:
                throttle.record_failure(
                    conn, "client", client_addr, int(config["LOGIN_CLIENT_MAX_FAILURES"]), window, lockout
                )
        return Outcome("invalid")

    mailbox = mailboxes.get_mailbox(conn, address)
    # Dovecot's own queries may not know about the portal's active flags yet.
    if mailbox is None or not mailbox["active"] or not mailbox["domain_active"]:
        return Outcome("disabled")
    throttle.clear(conn, "account", address)
    return Outcome("ok", mailbox=mailbox)
