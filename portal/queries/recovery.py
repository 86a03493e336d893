"""SQL for the recovery address and the links sent by mail (portal_recovery_tokens). Only a token's SHA-256
is stored or compared here."""

from __future__ import annotations

from datetime import timedelta

_SET_ADDRESS = """
INSERT INTO portal_mailbox_settings (mailbox_id, language, recovery_address, recovery_verified_at)
VALUES (%(mailbox_id)s, %(language)s, %(address)s, NULL)
ON CONFLICT (mailbox_id) DO UPDATE SET recovery_address = excluded.recovery_address, recovery_verified_at = NULL
"""

_VERIFIED = """
UPDATE portal_mailbox_settings SET recovery_verified_at = now()
 WHERE mailbox_id = %s AND recovery_address = %s
"""

_NEW_LINK = """
INSERT INTO portal_recovery_tokens (token_sha256, mailbox_id, purpose, address, expires_at)
VALUES (%s, %s, %s, %s, now() + %s)
"""

# Unused and unexpired; locked, so two tabs cannot both use one link.
_LOCK_LINK = """
SELECT t.mailbox_id, t.address, t.purpose, t.expires_at
  FROM portal_recovery_tokens t
 WHERE t.token_sha256 = %s AND t.purpose = %s AND t.used_at IS NULL AND t.expires_at > now()
   FOR UPDATE
"""

_USE_LINK = "UPDATE portal_recovery_tokens SET used_at = now() WHERE token_sha256 = %s"

# A new address or a new password makes every other open link of that kind worthless. They are marked used,
# not deleted, so they still count against the limits of links per mailbox.
_DROP_OPEN = """
UPDATE portal_recovery_tokens SET used_at = now() WHERE mailbox_id = %s AND purpose = %s AND used_at IS NULL
"""

_RECENT_LINKS = """
SELECT count(*) AS n FROM portal_recovery_tokens
 WHERE mailbox_id = %s AND purpose = %s AND created_at > now() - %s
"""

_COUNT_REQUEST = """
WITH recent AS (
    SELECT count(*) AS n FROM portal_recovery_requests WHERE client_addr IS NOT DISTINCT FROM %(client)s::inet
       AND at > now() - %(window)s
), added AS (
    INSERT INTO portal_recovery_requests (client_addr) VALUES (%(client)s::inet)
)
SELECT n + 1 AS n FROM recent
"""

_FORGET_OLD = """
WITH requests AS (DELETE FROM portal_recovery_requests WHERE at < now() - interval '1 day')
DELETE FROM portal_recovery_tokens WHERE expires_at < now() - interval '1 day'
"""


def set_address(conn, mailbox_id: int, address: str | None, language: str) -> None:
    """Store a new recovery address (None: none), not yet verified."""
    conn.execute(_SET_ADDRESS, {"mailbox_id": mailbox_id, "address": address, "language": language})


def mark_verified(conn, mailbox_id: int, address: str) -> bool:
    """The link sent to ``address`` was opened: it counts now, if it is still the mailbox's recovery address."""
    return conn.execute(_VERIFIED, (mailbox_id, address)).rowcount == 1


def new_token(conn, token_sha256: bytes, mailbox_id: int, purpose: str, address: str, valid: timedelta) -> None:
    """Store a link's token hash, valid for ``valid``."""
    conn.execute(_NEW_LINK, (token_sha256, mailbox_id, purpose, address, valid))


def lock_token(conn, token_sha256: bytes, purpose: str) -> dict | None:
    """The unused, unexpired link with this hash, locked (None: no such link)."""
    return conn.execute(_LOCK_LINK, (token_sha256, purpose)).fetchone()


def use_token(conn, token_sha256: bytes) -> None:
    """Mark a link used: it works once."""
    conn.execute(_USE_LINK, (token_sha256,))


def drop_open_tokens(conn, mailbox_id: int, purpose: str) -> int:
    """Make the mailbox's unused links of this kind worthless; return how many."""
    return conn.execute(_DROP_OPEN, (mailbox_id, purpose)).rowcount


def recent_links(conn, mailbox_id: int, purpose: str, window: timedelta) -> int:
    """Links of this kind made for the mailbox within ``window``, used or not."""
    return conn.execute(_RECENT_LINKS, (mailbox_id, purpose, window)).fetchone()["n"]


def count_request(conn, client_key: str | None, window: timedelta) -> int:
    """Record a "forgot password" request from ``client_key`` (an address or IPv6 /64); return how many that
    client made within ``window``, this one included."""
    return conn.execute(_COUNT_REQUEST, {"client": client_key, "window": window}).fetchone()["n"]


def forget_old(conn) -> None:
    """Delete request counts and links over a day past their use."""
    conn.execute(_FORGET_OLD)
