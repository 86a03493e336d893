"""Quota sizes as people write them, and the rules for mailbox limits."""

from __future__ import annotations

import re

from .i18n import _

# Binary units, as Dovecot counts them (its "M" is 1024 * 1024 bytes) and as
# mail admins usually mean "MB".
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
# ASCII digits only: "٣G" or "２G" is nobody's way of writing a size, and float() would take them.
_SIZE = re.compile(r"^\s*(\d+(?:[.,]\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE | re.ASCII)
MAX_BYTES = 1024**5  # 1 PiB: far beyond any mailbox, far below bigint


class InvalidSize(ValueError):
    """The text is not a size the portal understands; the message says why."""


def parse_size(text: str) -> int:
    """Return the bytes in '500 MB', '2 GB', '1.5G' or '0' (no unit: only 0 is accepted)."""
    if text is None or not text.strip():
        return 0
    match = _SIZE.match(text)
    if not match:
        raise InvalidSize(_("Write a size such as 500 MB or 2 GB, or 0."))
    number, unit = match.groups()
    if len(number) > 30:  # float() of a longer one is inf or loses every digit that matters
        raise InvalidSize(_("That is more than this portal allows (1 PB)."))
    value = float(number.replace(",", "."))
    has_unit = bool(unit) or text.strip().lower().endswith("b")
    if value != 0 and not has_unit:
        raise InvalidSize(_("Add a unit: MB or GB, for example 500 MB."))
    size = int(value * _UNITS[unit.lower()])
    if value != 0 and size == 0:
        raise InvalidSize(_("That is less than one byte. Write 0, or a size such as 500 MB."))
    if size > MAX_BYTES:
        raise InvalidSize(_("That is more than this portal allows (1 PB)."))
    return size


def format_size(size: int | None) -> str:
    """Return a size for people: '0 B', '512 KB', '1.5 GB'."""
    size = int(size or 0)
    for unit, factor in (("TB", 1024**4), ("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size >= factor:
            value = size / factor
            return f"{value:.1f} {unit}".replace(".0 ", " ") if value < 100 else f"{value:.0f} {unit}"
    return f"{size} B"


def limit_problem(requested: int, domain: dict) -> str | None:
    """Say what is wrong with a mailbox limit for this domain, or None (0 means the domain default)."""
    ceiling = int(domain["max_quota_bytes"] or 0)
    if requested < 0:
        return _("A limit cannot be negative.")
    if ceiling and requested > ceiling:
        return _("The most this domain allows per mailbox is %(size)s.", size=format_size(ceiling))
    return None


# From here on the user is warned that new mail will soon be refused.
ALMOST_FULL_PERCENT = 90


def is_almost_full(percent: int | None) -> bool:
    """Whether a mailbox at ``percent`` of its limit (None: unlimited) should be warned about."""
    return percent is not None and percent >= ALMOST_FULL_PERCENT


def usage_percent(used: int, limit: int) -> int | None:
    """Return the share of the limit in use, in whole percent, or None when unlimited."""
    if not limit:
        return None
    return min(999, int(used * 100 / limit))
