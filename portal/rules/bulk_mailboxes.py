"""One change to many mailboxes of a domain at once: disable, enable, set the size limit, or delete.

All or nothing, in one transaction: every mailbox goes through the same rule as
when it is changed alone (portal.rules.mailboxes), which locks it, asks
portal.access under the lock and writes one audit row for it. If any of them is
refused, nothing is changed. The review page runs the same function without
committing, so what it lists is what the rules would do now, refusals included.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field

import psycopg

from .. import doveadm
from ..access import Actor
from ..i18n import _
from ..queries import aliases as alias_queries
from ..queries import mailboxes as mailbox_queries
from . import roles
from .mailboxes import MailboxRuleError
from .mailboxes import change_locked_mailbox
from .mailboxes import delete_locked_mailbox

ACTIONS = ("disable", "enable", "limit", "delete")
# At most this many mailboxes in one change: a list page shows 50, and one
# transaction holding thousands of row locks would stall deliveries' lookups.
MOST_AT_ONCE = 200


@dataclass(frozen=True)
class BulkChange:
    """What to do with each selected mailbox; ``quota_bytes`` only for "limit" (0: the domain default)."""

    action: str
    quota_bytes: int = 0


@dataclass
class Outcome:
    """What the change does to one mailbox: ``changes`` as its audit row records them, or ``problem``."""

    email: str
    changes: dict = field(default_factory=dict)
    problem: str | None = None

    @property
    def unchanged(self) -> bool:
        """Nothing to do here: the mailbox is as asked already."""
        return self.problem is None and not self.changes


class BulkRefused(MailboxRuleError):
    """At least one mailbox may not be changed so; nothing was. ``outcomes`` says which and why."""

    def __init__(self, outcomes: list[Outcome]):
        super().__init__(_("Nothing was changed: some of the selected mailboxes cannot be changed so."))
        self.outcomes = outcomes


def change_mailboxes(conn, actor: Actor, *, domain_id: int, addresses: list[str], change: BulkChange,
                     mail_root: str, grace_days: int, delimiter: str = "+", dry_run: bool = False) -> list[Outcome]:
    """Apply ``change`` to the mailboxes of the domain at ``addresses`` in one transaction; return one outcome per
    address, in address order. With ``dry_run`` nothing is kept; otherwise BulkRefused if any is refused."""
    if change.action not in ACTIONS:
        raise MailboxRuleError(_("Choose what to do with the selected mailboxes."))
    wanted = sorted(set(addresses))
    if not wanted:
        raise MailboxRuleError(_("Select at least one mailbox."))
    if len(wanted) > MOST_AT_ONCE:
        raise MailboxRuleError(_("Select at most %(count)s mailboxes at once.", count=MOST_AT_ONCE))
    outcomes: dict[str, Outcome] = {}
    with conn.transaction() as transaction:
        # The locks in the order every single-mailbox rule takes them, so none of them deadlocks with this.
        if change.action == "delete":
            alias_queries.lock_alias_graph(conn)
        if change.action != "enable":
            # Before any row: a disabled mailbox's new limit takes it too (change_locked_mailbox), and a
            # rule that takes it after row locks could wait for a single change that waits for this one.
            roles.lock_roles(conn)
        for row in mailbox_queries.lock_in_domain(conn, domain_id, wanted):  # in id order
            outcomes[row["email"]] = _change_one(conn, actor, row, change, mail_root, grace_days, delimiter)
        for email in wanted:
            # Not in this domain, or gone: the same answer for both, as on every admin page.
            outcomes.setdefault(email, Outcome(email, problem=_("%(address)s is not a mailbox of this domain.",
                                                                 address=email)))
        refused = any(o.problem for o in outcomes.values())
        if dry_run or refused:
            raise psycopg.Rollback(transaction)
    result = [outcomes[email] for email in wanted]
    if refused and not dry_run:
        raise BulkRefused(result)
    if not dry_run and change.action in ("disable", "delete"):
        # Committed: now the mail clients of disabled or deleted mailboxes are disconnected, in one call
        # (one timeout at most while Dovecot does not answer).
        doveadm.end_mail_sessions(*[o.email for o in result if o.changes])
    return result


def _change_one(conn, actor: Actor, row: dict, change: BulkChange, mail_root: str, grace_days: int,
                delimiter: str) -> Outcome:
    """One mailbox, in a savepoint: a refusal leaves nothing of it behind (its outcome says why)."""
    try:
        with conn.transaction():
            if change.action == "delete":
                result = delete_locked_mailbox(conn, actor, mailbox=row, mail_root=mail_root, grace_days=grace_days)
                # In the words of its audit row.
                return Outcome(row["email"], {"purge_after": result["purge_after"].strftime("%Y-%m-%d"),
                                              "aliases_left_without_destination": result["removed_aliases"]})
            quota_bytes = change.quota_bytes if change.action == "limit" else row["quota_bytes"]
            active = {"disable": False, "enable": True}.get(change.action, row["active"])
            changes = change_locked_mailbox(conn, actor, mailbox=row, quota_bytes=quota_bytes, active=active,
                                            password_hash=None, delimiter=delimiter)
            # How many portal sessions ended says nothing before the change is made: its audit row keeps it.
            return Outcome(row["email"], {k: v for k, v in changes.items() if k != "sessions_ended"})
    except MailboxRuleError as exc:
        return Outcome(row["email"], problem=str(exc))
