"""SQL for API tokens (portal_api_tokens). Only the secret's SHA-256 is stored or compared here."""

from __future__ import annotations

_CREATE = """
INSERT INTO portal_api_tokens (mailbox_id, name, secret_sha256, domain_ids, read_only, expires_at)
VALUES (%(mailbox_id)s, %(name)s, %(secret_sha256)s, %(domain_ids)s, %(read_only)s, %(expires_at)s)
RETURNING id
"""

_OF_MAILBOX = """
SELECT t.id, t.name, t.read_only, t.expires_at, t.created_at, t.revoked_at, t.last_used_at, t.last_used_addr,
       t.domain_ids,
       (SELECT coalesce(array_agg(d.name ORDER BY d.name), '{}') FROM virtual_domains d
         WHERE d.id = ANY(t.domain_ids)) AS domains
  FROM portal_api_tokens t
 WHERE t.mailbox_id = %s
 ORDER BY t.revoked_at IS NOT NULL, t.created_at DESC, t.id DESC
"""

_LOCK_OWN = "SELECT * FROM portal_api_tokens WHERE id = %s AND mailbox_id = %s FOR UPDATE"

_REVOKE = "UPDATE portal_api_tokens SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL"

_REVOKE_ALL = "UPDATE portal_api_tokens SET revoked_at = now() WHERE mailbox_id = %s AND revoked_at IS NULL"

_LIVE_COUNT = """
SELECT count(*) AS n FROM portal_api_tokens
 WHERE mailbox_id = %s AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
"""

# One statement per call: the token as it is now, its holder's mailbox and domain still active, and the
# call counted in its one-minute window. The row lock orders concurrent calls of one token.
_USE = """
UPDATE portal_api_tokens t
   SET last_used_at = now(), last_used_addr = %(client_addr)s,
       window_started = CASE WHEN t.window_started > now() - interval '1 minute' THEN t.window_started
                             ELSE now() END,
       window_calls = CASE WHEN t.window_started > now() - interval '1 minute' THEN t.window_calls + 1 ELSE 1 END
  FROM virtual_users u JOIN virtual_domains d ON d.id = u.domain_id
 WHERE t.id = %(id)s AND u.id = t.mailbox_id
   AND t.secret_sha256 = %(secret_sha256)s AND t.revoked_at IS NULL
   AND (t.expires_at IS NULL OR t.expires_at > now()) AND u.active AND d.active
RETURNING t.id, t.mailbox_id, u.email, t.domain_ids, t.read_only, t.window_calls, t.window_started,
          (SELECT coalesce(json_agg(json_build_object('role', r.role, 'domain_id', r.domain_id)), '[]')
             FROM portal_roles r WHERE r.user_id = t.mailbox_id) AS roles
"""


def create(conn, *, mailbox_id: int, name: str, secret_sha256: bytes, domain_ids: list[int] | None,
           read_only: bool, expires_at) -> int:
    """Store a new token (its secret's hash only); return its id."""
    return conn.execute(_CREATE, {"mailbox_id": mailbox_id, "name": name, "secret_sha256": secret_sha256,
                                  "domain_ids": domain_ids, "read_only": read_only,
                                  "expires_at": expires_at}).fetchone()["id"]


def of_mailbox(conn, mailbox_id: int) -> list[dict]:
    """The tokens of one person, live ones first, with the names of the domains they are narrowed to."""
    return conn.execute(_OF_MAILBOX, (mailbox_id,)).fetchall()


def lock_own(conn, token_id: int, mailbox_id: int) -> dict | None:
    """Lock one token of this mailbox (None: no such token of theirs)."""
    return conn.execute(_LOCK_OWN, (token_id, mailbox_id)).fetchone()


def live_count(conn, mailbox_id: int) -> int:
    """How many of a person's tokens are neither revoked nor expired."""
    return conn.execute(_LIVE_COUNT, (mailbox_id,)).fetchone()["n"]


def revoke_all_of(conn, mailbox_id: int) -> int:
    """Revoke every live token of a mailbox; return how many."""
    return conn.execute(_REVOKE_ALL, (mailbox_id,)).rowcount


def revoke(conn, token_id: int) -> bool:
    """Revoke a token; False if it was revoked already."""
    return conn.execute(_REVOKE, (token_id,)).rowcount == 1


def use(conn, token_id: int, secret_sha256: bytes, client_addr: str | None) -> dict | None:
    """Count one call of a live token whose secret matches and whose holder can still sign in; return the
    token with its holder, the holder's roles now and this minute's calls, or None (unknown, wrong secret,
    revoked, expired, holder disabled: one answer for all)."""
    return conn.execute(_USE, {"id": token_id, "secret_sha256": secret_sha256,
                               "client_addr": client_addr}).fetchone()
