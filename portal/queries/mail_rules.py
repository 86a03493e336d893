"""SQL for a mailbox's out-of-office reply, filters and kept Sieve script (the source of its Sieve script)."""

from __future__ import annotations


def vacation_of(conn, mailbox_id: int) -> dict | None:
    """The mailbox's out-of-office reply as stored, or None (never set)."""
    return conn.execute(
        "SELECT enabled, subject, body, first_day, last_day, interval_days, addresses, set_by_role, updated_at"
        " FROM portal_vacations WHERE mailbox_id = %s",
        (mailbox_id,),
    ).fetchone()


def save_vacation(conn, mailbox_id: int, *, enabled: bool, subject: str, body: str, first_day, last_day,
                  interval_days: int, addresses: list[str], set_by_role: str) -> None:
    """Store the mailbox's out-of-office reply, replacing the one before."""
    conn.execute(
        """
        INSERT INTO portal_vacations (mailbox_id, enabled, subject, body, first_day, last_day, interval_days,
                                      addresses, set_by_role)
        VALUES (%(id)s, %(enabled)s, %(subject)s, %(body)s, %(first_day)s, %(last_day)s, %(interval_days)s,
                %(addresses)s, %(set_by_role)s)
        ON CONFLICT (mailbox_id) DO UPDATE
           SET enabled = EXCLUDED.enabled, subject = EXCLUDED.subject, body = EXCLUDED.body,
               first_day = EXCLUDED.first_day, last_day = EXCLUDED.last_day,
               interval_days = EXCLUDED.interval_days, addresses = EXCLUDED.addresses,
               set_by_role = EXCLUDED.set_by_role, updated_at = now()
        """,
        {"id": mailbox_id, "enabled": enabled, "subject": subject, "body": body, "first_day": first_day,
         "last_day": last_day, "interval_days": interval_days, "addresses": addresses, "set_by_role": set_by_role},
    )


def filters_of(conn, mailbox_id: int) -> list[dict]:
    """The mailbox's filters in the order they run."""
    return conn.execute(
        "SELECT field, match, value, action, argument FROM portal_mail_filters WHERE mailbox_id = %s"
        " ORDER BY position",
        (mailbox_id,),
    ).fetchall()


def replace_filters(conn, mailbox_id: int, filters: list[dict]) -> None:
    """Store the mailbox's filters, in this order, in place of the ones before."""
    conn.execute("DELETE FROM portal_mail_filters WHERE mailbox_id = %s", (mailbox_id,))
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO portal_mail_filters (mailbox_id, position, field, match, value, action, argument)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [(mailbox_id, position, f["field"], f["match"], f["value"], f["action"], f["argument"])
             for position, f in enumerate(filters, start=1)],
        )


def sieve_state_of(conn, mailbox_id: int) -> dict:
    """The kept script's name and the hash of the script the portal last wrote (both None: never written)."""
    row = conn.execute("SELECT kept_script, script_sha256 FROM portal_sieve_state WHERE mailbox_id = %s",
                       (mailbox_id,)).fetchone()
    return row or {"kept_script": None, "script_sha256": None}


def kept_script_of(conn, mailbox_id: int) -> str | None:
    """The name of another client's script the user keeps alongside the portal's rules, or None."""
    return sieve_state_of(conn, mailbox_id)["kept_script"]


def record_installed(conn, mailbox_id: int, kept_script: str | None, script_sha256: bytes | None) -> None:
    """Note the script the portal writes now (its hash; None: none active), keeping ``kept_script`` alongside."""
    conn.execute(
        "INSERT INTO portal_sieve_state (mailbox_id, kept_script, script_sha256) VALUES (%s, %s, %s)"
        " ON CONFLICT (mailbox_id) DO UPDATE SET kept_script = EXCLUDED.kept_script,"
        " script_sha256 = EXCLUDED.script_sha256, installed_at = now()",
        (mailbox_id, kept_script, script_sha256),
    )


def addresses_delivering_to(conn, email: str) -> list[dict]:
    """The addresses mail for the mailbox arrives at: its own, then every alias and personal address with a
    row to it (no catch-alls), each with ``own`` (False for an alias that also delivers to others, a group)."""
    rows = conn.execute(
        """
        SELECT a.source AS address,
               (SELECT count(*) FROM virtual_aliases o WHERE o.source = a.source AND o.destination <> o.source) = 1
                   AS own
          FROM virtual_aliases a
         WHERE a.destination = %s AND a.source <> a.destination AND left(a.source, 1) <> '@'
         GROUP BY a.source ORDER BY a.source
        """,
        (email,),
    ).fetchall()
    return [{"address": email, "own": True}, *rows]
