"""Where a mailbox's mail lives on disk: the one place that derives a maildir's path.

Dovecot keeps a mailbox's mail in ``<mail_root>/<domain>/<local part>``
(``mail_location = maildir:.../%d/%n``). Deleting and purging mail goes through
:func:`maildir_of`, which proves the path is exactly that folder of that mailbox
and nothing above or beside it.
"""

from __future__ import annotations

from pathlib import Path

from .addresses import InvalidAddress
from .addresses import canonical_domain
from .addresses import is_mailbox_address


class UnsafeMaildir(ValueError):
    """The address does not name exactly one folder of its own under the mail root."""


def maildir_of(mail_root: str, address: str) -> Path:
    """The folder of the mailbox ``address`` under ``mail_root``; UnsafeMaildir where no such folder can be named."""
    local, _, domain = address.rpartition("@")
    try:
        if canonical_domain(domain) != domain:
            raise UnsafeMaildir(f"{address!r}: the domain is not in its canonical form")
    except InvalidAddress:
        raise UnsafeMaildir(f"{address!r}: not a domain name") from None
    if not is_mailbox_address(address):
        raise UnsafeMaildir(f"{address!r}: the part before the @ is not safe as a folder name")
    root = Path(mail_root)
    if not root.is_absolute():
        raise UnsafeMaildir(f"the mail root {mail_root!r} is not an absolute path")
    path = root / domain / local
    # Belt and braces: whatever the rules above allow, the path is two levels under the root.
    if path.parent.parent != root or path.name != local or path.parent.name != domain:
        raise UnsafeMaildir(f"{address!r} does not name one folder under {mail_root}")
    return path


def is_purgeable(mail_root: str, address: str, recorded: str) -> str | None:
    """Why the recorded maildir of a deleted mailbox must not be removed (None: it may be)."""
    root = Path(mail_root).resolve()
    if recorded and root not in Path(recorded).resolve().parents:
        return f"{recorded} is not inside {root}"
    try:
        expected = maildir_of(mail_root, address)
    except UnsafeMaildir as exc:
        return str(exc)
    if not recorded or Path(recorded) != expected:
        return f"the recorded folder {recorded!r} is not {address}'s folder {expected}"
    resolved = expected.resolve()
    if resolved != Path(mail_root).resolve() / expected.parent.name / expected.name:
        return f"{expected} leads elsewhere ({resolved}) through a link"
    return None
