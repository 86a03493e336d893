"""App passwords: a user makes passwords for their own mail clients, each for some services, and revokes them.

Dovecot checks them itself (config/dovecot*/: one passdb per slot), so they work
for IMAP, POP3, ManageSieve and SMTP submission through Dovecot's SASL, and a
revoked one fails at the next login. The portal keeps only their hashes and
shows each one once.
"""

from __future__ import annotations

import secrets

from .. import access
from .. import notices
from .. import passwords
from ..access import Actor
from ..i18n import _
from ..i18n import _l
from ..mailconfig import APP_PASSWORD_SLOTS
from ..queries import app_passwords as app_password_queries
from ..queries import audit
from ..queries import mailboxes as mailbox_queries
from ..text import is_one_line

MAX_NAME = 60
# The services Dovecot names (%s / %{protocol}), in the order the page lists them.
SERVICES = {
    "imap": _l("IMAP: read mail"),
    "pop3": _l("POP3: download mail"),
    "smtp": _l("SMTP submission: send mail"),
    "sieve": _l("ManageSieve: edit filters"),
}
# 20 characters of a 32-letter alphabet without look-alikes: 100 random bits, typed in four groups.
_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"


class AppPasswordRefused(ValueError):
    """The app password cannot be made or revoked; the message says why, in the UI's language."""


def generate() -> str:
    """A new app password: xxxxx-xxxxx-xxxxx-xxxxx."""
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(20))
    return "-".join(raw[i:i + 5] for i in range(0, 20, 5))


def _own_mailbox(conn, actor: Actor) -> dict:
    if actor.is_command_line or actor.token is not None:
        raise AppPasswordRefused(_("App passwords are made and revoked on the portal's pages, by the mailbox's"
                                   " owner."))
    row = mailbox_queries.lock_mailbox(conn, actor.mailbox_id)
    if row is None or not row["active"]:
        raise AppPasswordRefused(_("This mailbox is disabled."))
    return row


def create_app_password(conn, actor: Actor, *, name: str, services: list[str], scheme: str) -> str:
    """Make an app password for the actor's own mailbox, for ``services``; return it, to be shown once."""
    name = " ".join((name or "").split())
    if not name or len(name) > MAX_NAME or not is_one_line(name):
        raise AppPasswordRefused(_("Give the app password a name of at most %(n)s characters, such as the device"
                                   " it is for.", n=MAX_NAME))
    chosen = [service for service in SERVICES if service in set(services or [])]
    if not chosen or len(chosen) != len(set(services)):
        raise AppPasswordRefused(_("Choose at least one service the app password is for."))
    password = generate()
    password_hash = passwords.hash_password(password, scheme)
    with conn.transaction():
        row = _own_mailbox(conn, actor)
        slot = app_password_queries.free_slot(conn, row["id"], APP_PASSWORD_SLOTS)
        if slot is None:
            raise AppPasswordRefused(_("A mailbox may have %(n)s app passwords; revoke one you no longer need"
                                       " first.", n=APP_PASSWORD_SLOTS))
        app_password_id = app_password_queries.create(conn, row["id"], slot, name, password_hash, chosen)
        powers = access.powers_of(conn, actor)
        audit.record(conn, **access.audit_fields(actor, powers, row["domain_id"]), action="app_password.create",
                     target=row["email"], domain=row["domain"],
                     summary={"app_password": app_password_id, "name": name, "services": chosen})
        notices.queue(conn, row, "app_password_created", notices.app_password_created, row["email"], name,
                      notices.Change("user", actor.client_addr))
    return password


def revoke_app_password(conn, actor: Actor, app_password_id: int) -> str:
    """Revoke one of the actor's app passwords (a client using it fails at its next login); return its name."""
    with conn.transaction():
        row = _own_mailbox(conn, actor)
        gone = app_password_queries.delete(conn, row["id"], app_password_id)
        if gone is None:
            raise AppPasswordRefused(_("There is no such app password."))
        powers = access.powers_of(conn, actor)
        audit.record(conn, **access.audit_fields(actor, powers, row["domain_id"]), action="app_password.revoke",
                     target=row["email"], domain=row["domain"],
                     summary={"app_password": gone["id"], "name": gone["name"]})
    return gone["name"]
