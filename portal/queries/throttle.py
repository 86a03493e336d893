"""SQL for counting failed sign-ins (portal_login_throttle)."""

from __future__ import annotations

from datetime import datetime
from datetime import timedelta


def locked_until(conn, keys: list[tuple[str, str]]) -> datetime | None:
    """Return the latest lock end among the (kind, key) pairs that are locked now, or None."""
    row = conn.execute(
        """
        SELECT max(locked_until) AS until FROM portal_login_throttle
         WHERE (kind, key) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
           AND locked_until > now()
        """,
        ([kind for kind, _ in keys], [key for _, key in keys]),
    ).fetchone()
    return row["until"]


def record_failure(conn, kind: str, key: str, limit: int, window: timedelta, lockout: timedelta) -> None:
    """Count one failure; lock the key once ``limit`` failures fall within ``window``."""
    conn.execute(
        """
        INSERT INTO portal_login_throttle AS t (kind, key, failures, window_started_at, locked_until)
        VALUES (%(kind)s, %(key)s, 1, now(), CASE WHEN %(limit)s <= 1 THEN now() + %(lockout)s END)
        ON CONFLICT (kind, key) DO UPDATE SET
            failures = CASE WHEN t.window_started_at < now() - %(window)s THEN 1 ELSE t.failures + 1 END,
            window_started_at = CASE WHEN t.window_started_at < now() - %(window)s
                                     THEN now() ELSE t.window_started_at END,
            locked_until = CASE
                WHEN (CASE WHEN t.window_started_at < now() - %(window)s THEN 1 ELSE t.failures + 1 END) >= %(limit)s
                THEN now() + %(lockout)s
                ELSE t.locked_until END
        """,
        {"kind": kind, "key": key, "limit": limit, "window": window, "lockout": lockout},
    )


def clear(conn, kind: str, key: str) -> None:
    """Forget the failures counted for one key."""
    conn.execute("DELETE FROM portal_login_throttle WHERE kind = %s AND key = %s", (kind, key))
