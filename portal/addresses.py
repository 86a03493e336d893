"""One canonical form for mail addresses and domain names, used for every comparison and write."""

from __future__ import annotations

import re
import unicodedata

import idna

from .i18n import _

MAX_ADDRESS_LENGTH = 254
MAX_LOCAL_PART_LENGTH = 64
MAX_DOMAIN_LENGTH = 253

# The RFC 5322 dot-atom, ASCII only: Postfix and Dovecot here are not set up for SMTPUTF8.
_LOCAL_PART = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# A mailbox's own name: what Dovecot accepts as a user name by default
# (auth_username_chars: letters, digits, "." "-" "_"), as a dot-atom. It is also
# the name of the mailbox's folder (mail_location .../%d/%n), so it can never be
# "", "." or "..", nor hold a "/". No recipient delimiter ("+") either: Postfix
# reads "bob+tag" as bob's address with a tag.
# The same text is a POSIX regular expression: "db upgrade" finds adopted names that break it.
MAILBOX_LOCAL_PART_PATTERN = r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$"
_MAILBOX_LOCAL_PART = re.compile(MAILBOX_LOCAL_PART_PATTERN)


# Only blanks are trimmed: a trailing CR or LF is refused, never silently dropped.
_TRIMMED = " \t"


class InvalidAddress(ValueError):
    """The text is not an address or domain the portal accepts; the message says why."""


def _reject_control_characters(text: str) -> None:
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in text):
        raise InvalidAddress(_("contains control characters"))


def canonical_domain(text: str) -> str:
    """Return the domain lower-cased in its ASCII (IDNA 2008, UTS 46) form."""
    if len(text) > 4 * MAX_DOMAIN_LENGTH:
        raise InvalidAddress(_("is too long"))
    name = text.strip(_TRIMMED)
    _reject_control_characters(name)
    name = unicodedata.normalize("NFC", name)
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise InvalidAddress(_("is empty"))
    try:
        ascii_name = idna.encode(name, uts46=True, transitional=False).decode("ascii")
    except idna.IDNAError:
        raise InvalidAddress(_("is not a valid domain name")) from None
    ascii_name = ascii_name.lower()
    if len(ascii_name) > MAX_DOMAIN_LENGTH:
        raise InvalidAddress(_("is too long"))
    labels = ascii_name.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise InvalidAddress(_("is not a valid domain name"))
    return ascii_name


def canonical_address(text: str) -> str:
    """Return ``local@domain`` trimmed, lower-cased, with the domain in ASCII form."""
    if len(text) > 4 * MAX_ADDRESS_LENGTH:
        raise InvalidAddress(_("is too long"))
    text = text.strip(_TRIMMED)
    _reject_control_characters(text)
    local, sep, domain = text.rpartition("@")
    if not sep or not local:
        raise InvalidAddress(_("is not an e-mail address"))
    # Checked before any normalisation, which would fold look-alikes such as the
    # Kelvin sign into ASCII letters.
    if not local.isascii():
        raise InvalidAddress(_("may only use ASCII letters before the @"))
    local = local.lower()
    if len(local) > MAX_LOCAL_PART_LENGTH or not _LOCAL_PART.match(local):
        raise InvalidAddress(_("is not an e-mail address"))
    address = f"{local}@{canonical_domain(domain)}"
    if len(address) > MAX_ADDRESS_LENGTH:
        raise InvalidAddress(_("is too long"))
    return address


def canonical_mailbox_address(text: str) -> str:
    """Return the canonical address of a mailbox, whose local part must also be safe as one folder name."""
    address = canonical_address(text)
    if not _MAILBOX_LOCAL_PART.match(address.rpartition("@")[0]):
        raise InvalidAddress(_("may only use letters, digits and . _ - before the @ (as a mailbox)"))
    return address


def is_mailbox_address(address: str) -> bool:
    """Whether a canonical address may name a mailbox (see canonical_mailbox_address)."""
    return bool(_MAILBOX_LOCAL_PART.match(address.rpartition("@")[0]))


def domain_of(address: str) -> str:
    """Return the domain part of a canonical address."""
    return address.rpartition("@")[2]
