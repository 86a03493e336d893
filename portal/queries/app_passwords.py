"""SQL for app passwords (portal_app_passwords). Only hashes are stored; Dovecot reads one slot per passdb."""

from __future__ import annotations


def of_mailbox(conn, mailbox_id: int) -> list[dict]:
    """The mailbox's app passwords (never their hashes), newest first."""
    return conn.execute(
        "SELECT id, slot, name, services, created_at FROM portal_app_passwords WHERE mailbox_id = %s"
        " ORDER BY created_at DESC, id DESC",
        (mailbox_id,),
    ).fetchall()


def free_slot(conn, mailbox_id: int, slots: int) -> int | None:
    """The lowest slot (1..slots) the mailbox has not used; None when all are taken."""
    row = conn.execute(
        "SELECT s AS slot FROM generate_series(1, %s) s"
        " WHERE s NOT IN (SELECT slot FROM portal_app_passwords WHERE mailbox_id = %s) ORDER BY s LIMIT 1",
        (slots, mailbox_id),
    ).fetchone()
    return row["slot"] if row else None


def create(conn, mailbox_id: int, slot: int, name: str, password_hash: str, services: list[str]) -> int:
    """Keep a new app password in a slot; return its id."""
    return conn.execute(
        "INSERT INTO portal_app_passwords (mailbox_id, slot, name, password, services)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (mailbox_id, slot, name, password_hash, services),
    ).fetchone()["id"]


def delete(conn, mailbox_id: int, app_password_id: int) -> dict | None:
    """Revoke one of the mailbox's app passwords; return what it was (None: no such app password)."""
    return conn.execute(
        "DELETE FROM portal_app_passwords WHERE mailbox_id = %s AND id = %s RETURNING id, name, services",
        (mailbox_id, app_password_id),
    ).fetchone()


def delete_all(conn, mailbox_id: int) -> int:
    """Revoke every app password of the mailbox; return how many there were."""
    return conn.execute("DELETE FROM portal_app_passwords WHERE mailbox_id = %s", (mailbox_id,)).rowcount
