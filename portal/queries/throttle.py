"""SQL for counting sign-in attempts (portal_login_throttle)."""

from __future__ import annotations

from datetime import datetime
from datetime import timedelta


def begin_attempts(conn, keys: list[tuple[str, str]], window: timedelta) -> dict[str, tuple[int, datetime | None]]:
    """Count an attempt for several (kind, key) of different kinds in one statement (one round trip), before it
    is checked; return, per kind, (attempts in the window, lock end or None).

    The counts go up atomically before Dovecot is asked, so parallel guesses
    each get their own number and no more than the limit get through.
    """
    rows = conn.execute(
        """
        INSERT INTO portal_login_throttle AS t (kind, key, failures, window_started_at)
        SELECT k.kind, k.key, 1, now() FROM unnest(%(kinds)s::text[], %(keys)s::text[]) AS k(kind, key)
        ON CONFLICT (kind, key) DO UPDATE SET
            failures = CASE WHEN t.window_started_at < now() - %(window)s THEN 1 ELSE t.failures + 1 END,
            window_started_at = CASE WHEN t.window_started_at < now() - %(window)s
                                     THEN now() ELSE t.window_started_at END
        RETURNING kind, failures, CASE WHEN locked_until > now() THEN locked_until END AS locked_until
        """,
        {"kinds": [kind for kind, _ in keys], "keys": [key for _, key in keys], "window": window},
    ).fetchall()
    return {row["kind"]: (row["failures"], row["locked_until"]) for row in rows}


def clear_many(conn, keys: list[tuple[str, str]]) -> None:
    """Forget the attempts counted for several (kind, key) in one statement."""
    conn.execute(
        "DELETE FROM portal_login_throttle WHERE (kind, key) IN"
        " (SELECT * FROM unnest(%s::text[], %s::text[]))",
        ([kind for kind, _ in keys], [key for _, key in keys]),
    )


def lock(conn, kind: str, key: str, lockout: timedelta) -> datetime:
    """Lock a key for the lockout period unless it is locked already; return when its lock ends.

    A lock ends at a fixed time: nothing extends it."""
    return conn.execute(
        """
        UPDATE portal_login_throttle
           SET locked_until = CASE WHEN locked_until > now() THEN locked_until ELSE now() + %s END
         WHERE kind = %s AND key = %s
        RETURNING locked_until
        """,
        (lockout, kind, key),
    ).fetchone()["locked_until"]


def clear_account(conn, address: str) -> dict | None:
    """Forget every failure counted against an address, from all clients; return what the account row held."""
    state_before = state(conn, "account", address)
    conn.execute(
        "DELETE FROM portal_login_throttle WHERE (kind IN ('account', 'second_factor') AND key = %s)"
        " OR (kind = 'pair' AND key LIKE %s)",
        (address, _like_prefix(address) + "|%"),
    )
    return state_before


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def undo_attempt(conn, kind: str, key: str) -> None:
    """Take back an attempt that turned out not to be a failure."""
    conn.execute(
        "UPDATE portal_login_throttle SET failures = greatest(failures - 1, 0) WHERE kind = %s AND key = %s",
        (kind, key),
    )


def purge_expired(conn, window: timedelta) -> int:
    """Delete rows whose window and lock are both over, and sign-in slots long free; return how many."""
    conn.execute("DELETE FROM portal_sign_in_slots WHERE until < now()")
    return conn.execute(
        """
        DELETE FROM portal_login_throttle
         WHERE window_started_at < now() - %s AND (locked_until IS NULL OR locked_until < now())
        """,
        (window,),
    ).rowcount


def take_sign_in_slot(conn, client_key: str, slots: int, hold: timedelta) -> tuple[int, datetime] | None:
    """Take a free sign-in slot of a client for at most ``hold``; return (slot, until) or None if all are taken.

    Each slot is one row per client: taking it is an insert, or an update of a
    row whose holder is gone (its time passed), so two requests never hold one.
    """
    for slot in range(1, slots + 1):
        row = conn.execute(
            """
            INSERT INTO portal_sign_in_slots AS s (client_key, slot, until) VALUES (%s, %s, clock_timestamp() + %s)
            ON CONFLICT (client_key, slot) DO UPDATE SET until = EXCLUDED.until WHERE s.until < now()
            RETURNING until
            """,
            (client_key, slot, hold),
        ).fetchone()
        if row is not None:
            return slot, row["until"]
    return None


def give_back_sign_in_slot(conn, client_key: str, slot: int, until: datetime) -> None:
    """Free a sign-in slot, unless it was taken over after its time passed."""
    conn.execute(
        "DELETE FROM portal_sign_in_slots WHERE client_key = %s AND slot = %s AND until = %s", (client_key, slot, until)
    )


def state(conn, kind: str, key: str) -> dict | None:
    """Return the failures counted for one key and until when it is locked (None: nothing counted)."""
    return conn.execute(
        """
        SELECT failures, window_started_at,
               CASE WHEN locked_until > now() THEN locked_until END AS locked_until
          FROM portal_login_throttle WHERE kind = %s AND key = %s
        """,
        (kind, key),
    ).fetchone()


def pairs_locked(conn, address: str) -> int:
    """How many client addresses are locked out of this account now."""
    return conn.execute(
        "SELECT count(*) AS n FROM portal_login_throttle WHERE kind = 'pair' AND key LIKE %s AND locked_until > now()",
        (_like_prefix(address) + "|%",),
    ).fetchone()["n"]
