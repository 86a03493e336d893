"""SQL for portal_send_as: the addresses a mailbox may send as, besides its own."""

from __future__ import annotations


def grant(conn, mailbox_id: int, address: str) -> int | None:
    """Record a send-as right; its id, or None when the mailbox holds it already."""
    row = conn.execute(
        "INSERT INTO portal_send_as (mailbox_id, address) VALUES (%s, %s)"
        " ON CONFLICT (address, mailbox_id) DO NOTHING RETURNING id",
        (mailbox_id, address),
    ).fetchone()
    return row["id"] if row else None


def lock(conn, grant_id: int) -> dict | None:
    """One grant with its mailbox's address and domain, locked until the transaction ends, or None."""
    return conn.execute(
        "SELECT g.id, g.address, g.mailbox_id, u.email, u.domain_id, d.name AS domain FROM portal_send_as g"
        " JOIN virtual_users u ON u.id = g.mailbox_id JOIN virtual_domains d ON d.id = u.domain_id"
        " WHERE g.id = %s FOR UPDATE OF g",
        (grant_id,),
    ).fetchone()


def revoke(conn, grant_id: int) -> None:
    """Remove one grant."""
    conn.execute("DELETE FROM portal_send_as WHERE id = %s", (grant_id,))


def of_mailbox(conn, mailbox_id: int) -> list[dict]:
    """The addresses a mailbox was granted, by address."""
    return conn.execute(
        "SELECT id, address, created_at FROM portal_send_as WHERE mailbox_id = %s ORDER BY address", (mailbox_id,)
    ).fetchall()


def holders_of(conn, address: str) -> list[dict]:
    """The mailboxes that may send as an address, by address."""
    return conn.execute(
        "SELECT g.id, u.email, g.created_at FROM portal_send_as g JOIN virtual_users u ON u.id = g.mailbox_id"
        " WHERE g.address = %s ORDER BY u.email",
        (address,),
    ).fetchall()


def revoke_on_domain(conn, domain: str) -> list[dict]:
    """Remove every grant of an address on this domain (an alias domain being unlinked); return them."""
    return conn.execute(
        "DELETE FROM portal_send_as g USING virtual_users u WHERE u.id = g.mailbox_id"
        " AND split_part(g.address, '@', 2) = %s RETURNING g.address, u.email",
        (domain,),
    ).fetchall()


def revoke_address(conn, address: str) -> list[str]:
    """Remove every grant of one address; return the mailboxes that held it."""
    return [r["email"] for r in conn.execute(
        "DELETE FROM portal_send_as g USING virtual_users u WHERE u.id = g.mailbox_id AND g.address = %s"
        " RETURNING u.email", (address,)).fetchall()]
