"""Creating, changing and deleting mailboxes: the rules shared by the admin pages, the command line and import."""

from __future__ import annotations

from . import quota
from .addresses import InvalidAddress
from .addresses import canonical_address
from .i18n import _
from .queries import aliases
from .queries import audit
from .queries import mailboxes as mailbox_queries


class MailboxRuleError(ValueError):
    """The mailbox cannot be created as asked; the message says why, in words for the admin."""


class MailboxConflict(MailboxRuleError):
    """Someone else changed the mailbox since the form was shown."""


def version_of(mailbox: dict) -> str:
    """What an edit form carries to notice a change made meanwhile: the row's last update time."""
    return mailbox["updated_at"].isoformat()


def address_for(local_part: str, domain: dict) -> str:
    """Return the canonical address of a new mailbox in ``domain``, or raise MailboxRuleError."""
    try:
        return canonical_address(f"{local_part.strip(' ')}@{domain['name']}")
    except InvalidAddress:
        raise MailboxRuleError(_("Use letters, digits and . _ - + only, for example anna.berg.")) from None


def create_mailbox(
    conn, *, domain_id: int, address: str, password_hash: str, quota_bytes: int, actor: str, actor_role: str,
    client_addr: str | None, display_name: str = "",
) -> int:
    """Create a mailbox in one transaction, within the domain's limits; return its id.

    The domain row is locked first, so concurrent creates see each other's counts:
    twenty creates at once against a limit of N leave exactly N mailboxes. The
    alias lock keeps mailbox addresses and alias sources apart.
    """
    with conn.transaction():
        aliases.lock_alias_graph(conn)
        domain = conn.execute(
            "SELECT id, name, active, max_mailboxes, mailbox_count, max_quota_bytes FROM virtual_domains"
            " WHERE id = %s FOR UPDATE",
            (domain_id,),
        ).fetchone()
        if domain["max_mailboxes"] and domain["mailbox_count"] >= domain["max_mailboxes"]:
            raise MailboxRuleError(_("%(domain)s already has its limit of %(count)s mailboxes.",
                                     domain=domain["name"], count=domain["max_mailboxes"]))
        problem = quota.limit_problem(quota_bytes, domain)
        if problem:
            raise MailboxRuleError(problem)
        if mailbox_queries.get_mailbox(conn, address) is not None:
            raise MailboxRuleError(_("%(address)s already exists.", address=address))
        kept = pending_removal(conn, address)
        if kept:
            command = f"flask --app app mailbox purge --address {address}"
            raise MailboxRuleError(_(
                "%(address)s was deleted on %(deleted)s and its mail is kept until %(until)s, so that nobody else "
                "receives it. Purge it first: %(command)s",
                address=address, deleted=kept["deleted_at"].strftime("%Y-%m-%d"),
                until=kept["purge_after"].strftime("%Y-%m-%d"), command=command,
            ))
        if aliases.source_exists(conn, address):
            raise MailboxRuleError(_("%(address)s is already an alias; remove the alias first.", address=address))
        mailbox_id = conn.execute(
            "INSERT INTO virtual_users (domain_id, email, password, quota_bytes, display_name)"
            " VALUES (%s, %s, %s, %s, %s) RETURNING id",
            (domain_id, address, password_hash, quota_bytes, display_name),
        ).fetchone()["id"]
        audit.record(
            conn, actor=actor, actor_role=actor_role, client_addr=client_addr, action="mailbox.create",
            target=address, domain=domain["name"], summary={"quota_bytes": quota_bytes},
        )
    return mailbox_id


def update_mailbox(
    conn, *, mailbox: dict, quota_bytes: int, active: bool, password_hash: str | None, actor: str,
    actor_role: str, client_addr: str | None, display_name: str | None = None, must_change: bool = False,
    expected_version: str | None = None,
) -> dict:
    """Change a mailbox's limit, active flag and (when given) password in one transaction.

    A new password or a disabled mailbox ends the mailbox's portal sessions.
    Returns what changed (for the audit row and the page), never the password.
    """
    from .queries import sessions as session_queries

    changes: dict = {}
    with conn.transaction():
        current = conn.execute("SELECT updated_at FROM virtual_users WHERE id = %s FOR UPDATE",
                               (mailbox["id"],)).fetchone()
        if expected_version and (current is None or version_of(current) != expected_version):
            raise MailboxConflict(_("Someone else changed %(address)s after you opened this page. It is shown as it"
                                    " is now: make your change again if it is still needed.",
                                    address=mailbox["email"]))
        domain = conn.execute(
            "SELECT name, max_quota_bytes FROM virtual_domains WHERE id = %s", (mailbox["domain_id"],)
        ).fetchone()
        problem = quota.limit_problem(quota_bytes, domain)
        if problem:
            raise MailboxRuleError(problem)
        if quota_bytes != mailbox["quota_bytes"]:
            changes["quota_bytes"] = {"before": mailbox["quota_bytes"], "after": quota_bytes}
        if active != mailbox["active"]:
            changes["active"] = {"before": mailbox["active"], "after": active}
        if display_name is None:
            display_name = mailbox["display_name"]
        if display_name != mailbox["display_name"]:
            changes["display_name"] = {"before": mailbox["display_name"], "after": display_name}
        if password_hash is not None:
            changes["password_changed"] = True
            if must_change:
                changes["must_change"] = True
        if not changes:
            return changes
        if not active:
            _keep_a_superadmin(conn, mailbox)
        conn.execute(
            # An enabled mailbox has no reason for being disabled (set by the helpdesk pages).
            "UPDATE virtual_users SET quota_bytes = %s, active = %s, display_name = %s,"
            " disabled_reason = CASE WHEN %s THEN '' ELSE disabled_reason END WHERE id = %s",
            (quota_bytes, active, display_name, active, mailbox["id"]),
        )
        if password_hash is not None:
            mailbox_queries.set_password(conn, mailbox["id"], password_hash, must_change)
        if password_hash is not None or not active:
            changes["sessions_ended"] = session_queries.delete_user_sessions(conn, mailbox["id"])
        audit.record(
            conn, actor=actor, actor_role=actor_role, client_addr=client_addr, action="mailbox.update",
            target=mailbox["email"], domain=domain["name"], summary=changes,
        )
    return changes


def _keep_a_superadmin(conn, mailbox: dict) -> None:
    from . import roles

    try:
        roles.keep_a_superadmin(conn, mailbox)
    except roles.RoleError as exc:
        raise MailboxRuleError(str(exc)) from None


def pending_removal(conn, address: str) -> dict | None:
    """Return the removal of a deleted mailbox at this address whose mail is still kept."""
    return conn.execute(
        "SELECT deleted_at, purge_after, maildir FROM portal_mailbox_removals WHERE email = %s AND purged_at IS NULL",
        (address,),
    ).fetchone()


def delete_mailbox(
    conn, *, mailbox: dict, mail_root: str, grace_days: int, actor: str, actor_role: str, client_addr: str | None,
) -> dict:
    """Delete a mailbox, keep its maildir queued for purging, and drop alias rows that delivered to it.

    Returns ``{"removed_aliases": [...], "purge_after": ...}``: the alias rows that
    pointed to the mailbox are gone; aliases left without any destination are listed.
    """
    local, _, domain = mailbox["email"].partition("@")
    with conn.transaction():
        aliases.lock_alias_graph(conn)
        _keep_a_superadmin(conn, mailbox)
        removed = conn.execute(
            "DELETE FROM virtual_aliases WHERE destination = %s AND source <> %s RETURNING source",
            (mailbox["email"], mailbox["email"]),
        ).fetchall()
        orphaned = sorted(
            {r["source"] for r in removed} - {
                r["source"] for r in conn.execute(
                    "SELECT DISTINCT source FROM virtual_aliases WHERE source = ANY(%s)",
                    ([r["source"] for r in removed],),
                ).fetchall()
            }
        )
        purge_after = conn.execute(
            """
            INSERT INTO portal_mailbox_removals (email, maildir, purge_after)
            VALUES (%s, %s, now() + make_interval(days => %s)) RETURNING purge_after
            """,
            (mailbox["email"], f"{mail_root.rstrip('/')}/{domain}/{local}", grace_days),
        ).fetchone()["purge_after"]
        # Its own forwarding rows, personal aliases, roles and sessions go with it.
        conn.execute("DELETE FROM virtual_aliases WHERE source = %s", (mailbox["email"],))
        conn.execute("DELETE FROM virtual_users WHERE id = %s", (mailbox["id"],))
        audit.record(
            conn, actor=actor, actor_role=actor_role, client_addr=client_addr, action="mailbox.delete",
            target=mailbox["email"], domain=domain,
            summary={"aliases_left_without_destination": orphaned, "purge_after": purge_after.isoformat()},
        )
    return {"removed_aliases": orphaned, "purge_after": purge_after}


def due_removals(conn, address: str | None = None) -> list[dict]:
    """Return removals whose grace period is over (or the named one, due or not)."""
    if address:
        return conn.execute(
            "SELECT id, email, maildir FROM portal_mailbox_removals WHERE email = %s AND purged_at IS NULL",
            (address,),
        ).fetchall()
    return conn.execute(
        "SELECT id, email, maildir FROM portal_mailbox_removals WHERE purged_at IS NULL AND purge_after <= now()"
        " ORDER BY purge_after"
    ).fetchall()


def mark_purged(conn, removal_id: int) -> None:
    """Record that a removal's maildir is gone."""
    conn.execute("UPDATE portal_mailbox_removals SET purged_at = now() WHERE id = %s", (removal_id,))


def delete_domain(
    conn, *, domain: dict, mail_root: str, grace_days: int, actor: str, actor_role: str, client_addr: str | None,
) -> dict:
    """Delete a domain with its mailboxes and aliases, keeping every maildir queued for purging.

    Every mailbox follows the mailbox-deletion rule: its maildir is kept for the
    grace period and its address cannot be created again until then. Alias rows
    in other domains that delivered to its mailboxes go too.
    """
    root = mail_root.rstrip("/")
    with conn.transaction():
        aliases.lock_alias_graph(conn)
        from . import roles

        try:
            roles.keep_a_superadmin_outside(conn, domain)
        except roles.RoleError as exc:
            raise MailboxRuleError(str(exc)) from None
        conn.execute("SELECT id FROM virtual_domains WHERE id = %s FOR UPDATE", (domain["id"],))
        queued = conn.execute(
            """
            INSERT INTO portal_mailbox_removals (email, maildir, purge_after)
            SELECT u.email, %(root)s || '/' || %(name)s || '/' || split_part(u.email, '@', 1),
                   now() + make_interval(days => %(days)s)
              FROM virtual_users u WHERE u.domain_id = %(id)s
            RETURNING email
            """,
            {"root": root, "name": domain["name"], "days": grace_days, "id": domain["id"]},
        ).fetchall()
        elsewhere = conn.execute(
            """
            DELETE FROM virtual_aliases a USING virtual_users u
             WHERE u.domain_id = %s AND a.destination = u.email AND a.domain_id <> u.domain_id
            RETURNING a.source
            """,
            (domain["id"],),
        ).fetchall()
        counts = conn.execute(
            "SELECT mailbox_count, alias_count FROM virtual_domains WHERE id = %s", (domain["id"],)
        ).fetchone()
        conn.execute("DELETE FROM virtual_domains WHERE id = %s", (domain["id"],))
        summary = {
            "mailboxes": len(queued), "alias_rows": counts["alias_count"],
            "alias_rows_elsewhere": sorted({r["source"] for r in elsewhere}),
        }
        audit.record(conn, actor=actor, actor_role=actor_role, client_addr=client_addr, action="domain.delete",
                     target=domain["name"], domain=domain["name"], summary=summary)
    return summary
