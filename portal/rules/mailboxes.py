"""Creating, changing, deleting and purging mailboxes, and deleting domains with their mailboxes.

The admin pages, the command line and (for its checks) the CSV import call
these. Each runs in one transaction: lock, read the actor's powers and the
target's roles under the lock, ask portal.access, write, audit.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .. import access
from .. import doveadm
from .. import maildirs
from .. import notices
from .. import quota
from ..access import Actor
from ..addresses import InvalidAddress
from ..addresses import canonical_mailbox_address
from ..i18n import _
from ..queries import alias_domains as alias_domain_queries
from ..queries import aliases as alias_queries
from ..queries import api_tokens as token_queries
from ..queries import app_passwords as app_password_queries
from ..queries import audit
from ..queries import domains as domain_queries
from ..queries import mailboxes as mailbox_queries
from ..queries import recovery as recovery_queries
from ..queries import sessions as session_queries
from ..text import is_one_line
from . import addressing
from . import roles


class MailboxRuleError(ValueError):
    """The mailbox cannot be created or changed as asked; the message says why, in words for the admin."""


class MailboxRefused(MailboxRuleError):
    """The actor may not do this to this mailbox (answered with 403)."""


class MailboxConflict(MailboxRuleError):
    """Someone else changed the mailbox since the form was shown."""


def version_of(mailbox: dict) -> str:
    """What an edit form carries to notice a change made meanwhile: the row's last update time."""
    return mailbox["updated_at"].isoformat()


def address_for(local_part: str, domain: dict) -> str:
    """Return the canonical address of a new mailbox in ``domain``, or raise MailboxRuleError."""
    return mailbox_address(f"{local_part.strip(' ')}@{domain['name']}")


def mailbox_address(text: str) -> str:
    """The canonical address of a new mailbox; MailboxRuleError unless it is one Dovecot accepts and is
    safe as a folder name."""
    try:
        return canonical_mailbox_address(text)
    except InvalidAddress:
        raise MailboxRuleError(_("Use letters, digits and . _ - only, for example anna.berg.")) from None


def taken_problems(conn, addresses: list[str]) -> dict[str, str]:
    """Why each of ``addresses`` cannot become a new mailbox now (absent: it can); call under the alias lock.

    Two queries for any number of addresses: the admin pages and the command line ask for one, the CSV import
    for all of its rows."""
    problems = {}
    for address, what in mailbox_queries.taken(conn, addresses).items():
        problems[address] = _address_taken(conn, address, what)
    # An alias written on an alias domain at the same local part would take the new mailbox's mail there.
    for address, shadow in alias_queries.alias_domain_shadows(conn, addresses).items():
        if address not in problems:
            problems[address] = _("%(alias)s is an alias on an alias domain of this domain; remove it before"
                                  " %(address)s is used.", alias=shadow, address=address)
    return problems


def room_problem(domain: dict, adding: int) -> str | None:
    """Why ``adding`` more mailboxes would break the domain's limit (None: they fit)."""
    if domain["max_mailboxes"] and domain["mailbox_count"] + adding > domain["max_mailboxes"]:
        return _("%(domain)s already has its limit of %(count)s mailboxes.", domain=domain["name"],
                 count=domain["max_mailboxes"])
    return None


def _address_taken(conn, address: str, what: str) -> str:
    if what == "mailbox":
        return _("%(address)s already exists.", address=address)
    if what == "deleted":
        kept = mailbox_queries.pending_removal(conn, address)
        command = f"flask --app app mailbox purge --address {address}"
        return _(
            "%(address)s was deleted on %(deleted)s and its mail is kept until %(until)s, so that nobody else "
            "receives it. Purge it first: %(command)s",
            address=address, deleted=kept["deleted_at"].strftime("%Y-%m-%d"),
            until=kept["purge_after"].strftime("%Y-%m-%d"), command=command,
        )
    return _("%(address)s is already an alias; remove the alias first.", address=address)


def create_mailbox(
    conn, actor: Actor, *, domain_id: int, address: str, password_hash: str, quota_bytes: int, reserved: list[str],
    display_name: str = "", must_change: bool = False,
) -> int:
    """Create a mailbox in one transaction, within the domain's limits; return its id.

    The domain row is locked first, so concurrent creates see each other's counts:
    twenty creates at once against a limit of N leave exactly N mailboxes. The
    alias lock keeps mailbox addresses and alias sources apart.
    """
    address = mailbox_address(address)
    _check_name(display_name)
    with conn.transaction():
        alias_queries.lock_alias_graph(conn)
        domain = domain_queries.lock_domain(conn, domain_id)
        powers = access.powers_of(conn, actor)
        if domain is None or not powers.administers(domain_id):
            raise MailboxRefused(_("You do not administer this domain."))
        if address.rpartition("@")[2] != domain["name"]:
            raise MailboxRuleError(_("The address must end in @%(domain)s.", domain=domain["name"]))
        if not powers.superadmin and address.partition("@")[0] in reserved:
            raise MailboxRuleError(_("%(address)s is reserved for the administrators of %(domain)s.",
                                     address=address, domain=domain["name"]))
        problem = (room_problem(domain, 1) or quota.limit_problem(quota_bytes, domain)
                   or taken_problems(conn, [address]).get(address))
        if problem:
            raise MailboxRuleError(problem)
        mailbox_id = mailbox_queries.create(conn, domain_id, address, password_hash, quota_bytes, display_name,
                                            must_change)
        audit.record(conn, **access.audit_fields(actor, powers, domain_id), action="mailbox.create",
                     target=address, domain=domain["name"],
                     summary={"quota_bytes": quota_bytes, **({"must_change": True} if must_change else {})})
    return mailbox_id


def _lock_for_admin(conn, actor: Actor, mailbox: dict) -> tuple[dict, access.Powers]:
    """Lock the mailbox, then ask whether the actor may manage it; return (row as it is now, powers)."""
    return access.lock_and_ask(conn, actor, mailbox, access.refusal_to_manage_mailbox, MailboxRefused)


def update_mailbox(
    conn, actor: Actor, *, mailbox: dict, quota_bytes: int, active: bool, password_hash: str | None,
    display_name: str | None = None, must_change: bool = False, expected_version: str | None = None,
    delimiter: str = "+",
) -> dict:
    """Change a mailbox's limit, active flag and (when given) password in one transaction.

    A new password or a disabled mailbox ends the mailbox's portal sessions.
    Returns what changed (for the audit row and the page), never the password.
    """
    if display_name is not None:
        _check_name(display_name)
    with conn.transaction():
        changes = change_locked_mailbox(conn, actor, mailbox=mailbox, quota_bytes=quota_bytes, active=active,
                                        password_hash=password_hash, display_name=display_name,
                                        must_change=must_change, expected_version=expected_version,
                                        delimiter=delimiter)
    if changes and (password_hash is not None or not active):
        # Committed: now a mail client still connected with the old password, or to the disabled mailbox, goes.
        doveadm.end_mail_sessions(mailbox["email"])
    return changes


def change_locked_mailbox(
    conn, actor: Actor, *, mailbox: dict, quota_bytes: int, active: bool, password_hash: str | None,
    display_name: str | None = None, must_change: bool = False, expected_version: str | None = None,
    delimiter: str = "+",
) -> dict:
    """The body of update_mailbox, inside the caller's transaction; ending the mail sessions is the caller's,
    after the commit. Returns what changed ({}: nothing)."""
    changes: dict = {}
    if not active:
        roles.lock_roles(conn)  # disabling may take a superadmin's sign-in: before the row lock
    current, powers = _lock_for_admin(conn, actor, mailbox)
    if expected_version and version_of(current) != expected_version:
        raise MailboxConflict(_("Someone else changed %(address)s after you opened this page. It is shown as it"
                                " is now: make your change again if it is still needed.",
                                address=current["email"]))
    refusal = access.refusal_to_change_own_mailbox(actor, current, password=password_hash is not None,
                                                   active=active)
    if refusal:
        raise MailboxRefused(refusal)
    domain = domain_queries.get_domain(conn, current["domain_id"])
    # Only a new limit is held to the domain's ceiling: one set before the ceiling was lowered must not
    # block disabling the mailbox (a compromised account, in a hurry).
    problem = quota.limit_problem(quota_bytes, domain) if quota_bytes != current["quota_bytes"] else None
    if problem:
        raise MailboxRuleError(problem)
    if quota_bytes != current["quota_bytes"]:
        changes["quota_bytes"] = {"before": current["quota_bytes"], "after": quota_bytes}
    if active != current["active"]:
        changes["active"] = {"before": current["active"], "after": active}
    if display_name is None:
        display_name = current["display_name"]
    if display_name != current["display_name"]:
        changes["display_name"] = {"before": current["display_name"], "after": display_name}
    if password_hash is not None:
        changes["password_changed"] = True
        if must_change:
            changes["must_change"] = True
    if not changes:
        return changes
    if not active:
        _keep_a_superadmin(conn, current)
    elif not current["active"]:
        problem = addressing.enabling_problem(conn, [current["email"]], delimiter)
        if problem:
            raise MailboxRuleError(problem)
    mailbox_queries.update_settings(conn, current["id"], quota_bytes, active, display_name)
    if password_hash is not None:
        mailbox_queries.set_password(conn, current["id"], password_hash, must_change)
        recovery_queries.drop_open_tokens(conn, current["id"], "reset")
    if password_hash is not None or not active:
        changes["sessions_ended"] = session_queries.delete_user_sessions(conn, current["id"])
    if password_hash is not None:
        # A password set by an administrator: tokens and app passwords made with the old one go with it.
        revoked = token_queries.revoke_all_of(conn, current["id"])
        if revoked:
            changes["api_tokens_revoked"] = revoked
        app_passwords = app_password_queries.delete_all(conn, current["id"])
        if app_passwords:
            changes["app_passwords_revoked"] = app_passwords
    who = access.audit_fields(actor, powers, current["domain_id"])
    if password_hash is not None:
        notices.queue(conn, current, "password_changed", notices.password_changed, current["email"],
                      notices.Change.of_audit(who))
    audit.record(conn, **who, action="mailbox.update", target=current["email"], domain=domain["name"],
                 summary=changes)
    return changes


def _check_name(display_name: str) -> None:
    if len(display_name) > 255 or not is_one_line(display_name):
        raise MailboxRuleError(_("The name must be one line of at most 255 characters, without control characters."))


def _keep_a_superadmin(conn, mailbox: dict) -> None:
    try:
        roles.keep_a_superadmin(conn, mailbox)
    except roles.RoleError as exc:
        raise MailboxRuleError(str(exc)) from None


def _maildir_or_none(mail_root: str, address: str) -> str:
    # A mailbox adopted with a name that is no safe folder (such as "alice/") is deleted,
    # but its folder is never purged automatically: purge says so and leaves it.
    try:
        return str(maildirs.maildir_of(mail_root, address))
    except maildirs.UnsafeMaildir:
        return ""


def _record_effects_elsewhere(conn, actor: Actor, powers, removed: list[dict], target: str, acting_domain: str):
    """One audit row in each other domain whose alias rows a deletion removed, so its admins see why."""
    by_domain: dict[tuple[int, str], list[str]] = {}
    for row in removed:
        if row["domain"] != acting_domain:
            by_domain.setdefault((row["domain_id"], row["domain"]), []).append(row["source"])
    for (domain_id, name), sources in sorted(by_domain.items(), key=lambda item: item[0][1]):
        audit.record(conn, **access.audit_fields(actor, powers, domain_id), action="alias.destination_removed",
                     target=target, domain=name, summary={"aliases": sorted(set(sources))})


def delete_mailbox(conn, actor: Actor, *, mailbox: dict, mail_root: str, grace_days: int) -> dict:
    """Delete a mailbox, keep its maildir queued for purging, and drop alias rows that delivered to it.

    Returns ``{"removed_aliases": [...], "purge_after": ...}``: aliases of the
    mailbox's own domain left without any destination are listed; rows removed in
    other domains are recorded in those domains' audit logs.
    """
    with conn.transaction():
        alias_queries.lock_alias_graph(conn)
        roles.lock_roles(conn)
        result = delete_locked_mailbox(conn, actor, mailbox=mailbox, mail_root=mail_root, grace_days=grace_days)
    doveadm.end_mail_sessions(result["email"])
    return {"removed_aliases": result["removed_aliases"], "purge_after": result["purge_after"]}


def delete_locked_mailbox(conn, actor: Actor, *, mailbox: dict, mail_root: str, grace_days: int) -> dict:
    """The body of delete_mailbox, inside the caller's transaction, which holds the alias and role locks already;
    ending the mail sessions is the caller's, after the commit. Returns delete_mailbox's answer and the address."""
    current, powers = _lock_for_admin(conn, actor, mailbox)
    if current["email"] == actor.address:
        raise MailboxRefused(_("You cannot delete the mailbox you are signed in with."))
    _keep_a_superadmin(conn, current)
    email, domain = current["email"], current["domain"]
    removed = alias_queries.delete_rows_delivering_to(conn, email)
    # Its address on each alias domain of its domain is its too: rows delivering there would reach
    # the next owner of the address.
    for alias_domain in alias_domain_queries.names_for(conn, domain):
        removed += alias_queries.delete_rows_delivering_to(conn, f"{email.partition('@')[0]}@{alias_domain}")
    orphaned = sorted({r["source"] for r in removed if r["orphaned"] and r["domain"] == domain})
    queued = mailbox_queries.queue_removals(conn, [email], [_maildir_or_none(mail_root, email)], grace_days)
    # Its own forwarding rows, personal aliases, roles and sessions go with it.
    alias_queries.delete_source(conn, email)
    mailbox_queries.delete(conn, current["id"])
    audit.record(conn, **access.audit_fields(actor, powers, current["domain_id"]), action="mailbox.delete",
                 target=email, domain=domain,
                 summary={"aliases_left_without_destination": orphaned,
                          "purge_after": queued["purge_after"].isoformat()})
    _record_effects_elsewhere(conn, actor, powers, removed, email, domain)
    return {"email": email, "removed_aliases": orphaned, "purge_after": queued["purge_after"]}


def purge(conn, actor: Actor, *, mail_root: str, address: str | None = None) -> list[dict]:
    """Remove the maildirs of deleted mailboxes whose grace period is over (or the named one, due or not).

    Returns one result per removal: ``{"email", "maildir", "outcome"}`` with outcome
    "purged", "no maildir" (nothing there: not marked done, the mail may live
    elsewhere), "released" (nothing there, and the removal was named: the address
    never received mail, so it is free again) or "refused" (the recorded path is
    not exactly that mailbox's folder).
    """
    results = []
    with conn.transaction():
        if not access.powers_of(conn, actor).superadmin:
            raise MailboxRefused(_("Only a superadmin can purge the mail of deleted mailboxes."))
    for removal in mailbox_queries.due_removals(conn, address):
        problem = maildirs.is_purgeable(mail_root, removal["email"], removal["maildir"])
        if problem:
            results.append({"email": removal["email"], "maildir": removal["maildir"], "outcome": "refused",
                            "problem": problem})
            continue
        path = Path(removal["maildir"])
        found = path.is_dir()
        # Dovecot makes a maildir at the first delivery, so a mailbox deleted before any has none. Released only
        # when the operator names it and the mail root is there: a wrong mail_root must not free every address.
        if not found and not (address and Path(mail_root).is_dir()):
            results.append({"email": removal["email"], "maildir": str(path), "outcome": "no maildir"})
            continue
        if found:
            shutil.rmtree(path)
        with conn.transaction():
            powers = access.powers_of(conn, actor)
            mailbox_queries.mark_purged(conn, removal["id"])
            # The usage Dovecot last reported belongs to the deleted mailbox, not to the address's next owner.
            mailbox_queries.forget_usage(conn, removal["email"])
            audit.record(conn, **access.audit_fields(actor, powers), action="mailbox.purge", target=removal["email"],
                         domain=removal["email"].partition("@")[2],
                         summary={"maildir": str(path), **({} if found else {"found": False})})
        results.append({"email": removal["email"], "maildir": str(path), "outcome": "purged" if found else "released"})
    return results


def delete_domain(conn, actor: Actor, *, domain: dict, mail_root: str, grace_days: int) -> dict:
    """Delete a domain with its mailboxes and aliases, keeping every maildir queued for purging.

    Every mailbox follows the mailbox-deletion rule: its maildir is kept for the
    grace period and its address cannot be created again until then. Alias rows
    in other domains that delivered to its mailboxes go too, recorded in those
    domains' audit logs.
    """
    with conn.transaction():
        alias_queries.lock_alias_graph(conn)
        roles.lock_roles(conn)
        powers = access.powers_of(conn, actor)
        if not powers.superadmin:
            raise MailboxRefused(_("Only a superadmin can delete a domain."))
        try:
            roles.keep_a_superadmin_outside(conn, domain)
        except roles.RoleError as exc:
            raise MailboxRuleError(str(exc)) from None
        current = domain_queries.lock_domain(conn, domain["id"])
        if current is None:
            raise MailboxRuleError(_("%(domain)s no longer exists.", domain=domain["name"]))
        boxes = mailbox_queries.of_domain(conn, current["id"])
        emails = [b["email"] for b in boxes]
        mailbox_queries.queue_removals(conn, emails, [_maildir_or_none(mail_root, e) for e in emails], grace_days)
        elsewhere = alias_queries.delete_rows_delivering_into_domain(conn, current["id"])
        for alias_domain in alias_domain_queries.names_for(conn, current["name"]):
            elsewhere += alias_queries.delete_rows_delivering_into_alias_domain(conn, alias_domain, current["id"])
        domain_queries.delete_domain(conn, current["id"])
        summary = {
            "mailboxes": len(boxes), "alias_rows": current["alias_count"],
            "alias_rows_elsewhere": sorted({r["source"] for r in elsewhere}),
        }
        audit.record(conn, **access.audit_fields(actor, powers, current["id"]), action="domain.delete",
                     target=current["name"], domain=current["name"], summary=summary)
        _record_effects_elsewhere(conn, actor, powers, elsewhere, current["name"], current["name"])
    doveadm.end_mail_sessions(f"*@{current['name']}")
    return summary
