"""SQL for what the portal writes to its users: their language, recovery address and the outbox."""

from __future__ import annotations

_SETTINGS = """
SELECT s.language, s.recovery_address, s.recovery_verified_at
  FROM portal_mailbox_settings s WHERE s.mailbox_id = %s
"""

_REMEMBER_LANGUAGE = """
INSERT INTO portal_mailbox_settings (mailbox_id, language) VALUES (%s, %s)
ON CONFLICT (mailbox_id) DO UPDATE SET language = excluded.language
 WHERE portal_mailbox_settings.language IS DISTINCT FROM excluded.language
"""

_QUEUE = """
INSERT INTO portal_outbox (kind, recipient, delivery, message) VALUES (%s, %s, %s, %s) RETURNING id
"""

# Due notices, oldest first; a row another sender holds is skipped, not waited for.
_LOCK_DUE = """
SELECT id, recipient, delivery, message, attempts FROM portal_outbox
 WHERE sent_at IS NULL AND next_attempt_at <= now() AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s))
 ORDER BY id
 LIMIT %(limit)s
   FOR UPDATE SKIP LOCKED
"""

_SENT = "UPDATE portal_outbox SET sent_at = now(), attempts = attempts + 1, last_error = NULL WHERE id = %s"

# Retried after 1, 2, 4 ... minutes, at most six hours apart.
_FAILED = """
UPDATE portal_outbox
   SET attempts = attempts + 1, last_error = %s,
       next_attempt_at = now() + least(interval '1 minute' * power(2, attempts), interval '6 hours')
 WHERE id = %s
"""

_UNSENT = """
SELECT count(*) AS count, min(created_at) AS oldest, max(attempts) AS most_attempts
  FROM portal_outbox WHERE sent_at IS NULL
"""

# Sent notices are kept a month, for the operator's questions; then they go.
_FORGET_SENT = "DELETE FROM portal_outbox WHERE sent_at < now() - interval '30 days'"


def settings_of(conn, mailbox_id: int) -> dict:
    """The mailbox's language and recovery address (defaults when it never set any)."""
    row = conn.execute(_SETTINGS, (mailbox_id,)).fetchone()
    return row or {"language": None, "recovery_address": None, "recovery_verified_at": None}


def remember_language(conn, mailbox_id: int, language: str) -> None:
    """Keep the language the user used last, for the mail the portal writes them."""
    conn.execute(_REMEMBER_LANGUAGE, (mailbox_id, language))


def queue(conn, kind: str, recipient: str, delivery: str, message: bytes) -> int:
    """Add a message to the outbox (in the caller's transaction), to go by ``delivery``; return its id."""
    return conn.execute(_QUEUE, (kind, recipient, delivery, message)).fetchone()["id"]


def lock_due(conn, ids: list[int] | None, limit: int) -> list[dict]:
    """Lock up to ``limit`` due messages (only ``ids``, when given) that no other sender holds."""
    return conn.execute(_LOCK_DUE, {"ids": ids, "limit": limit}).fetchall()


def mark_sent(conn, outbox_id: int) -> None:
    """The message was accepted by the SMTP server."""
    conn.execute(_SENT, (outbox_id,))


def mark_failed(conn, outbox_id: int, error: str) -> None:
    """The send failed: keep the reason and try again later."""
    conn.execute(_FAILED, (error, outbox_id))


def unsent(conn) -> dict:
    """How many notices wait, since when, and the most tries one has had."""
    return conn.execute(_UNSENT).fetchone()


def forget_sent(conn) -> int:
    """Delete notices sent more than 30 days ago; return how many."""
    return conn.execute(_FORGET_SENT).rowcount
