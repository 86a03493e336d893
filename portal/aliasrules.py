"""The rules for alias rows, shared by self-service forwarding and (later) the admin pages.

Everything here runs inside the caller's transaction, after
``aliases.lock_alias_graph``, so a check and the write it allows cannot be
overtaken by a concurrent save.
"""

from __future__ import annotations

from dataclasses import dataclass

from .addresses import InvalidAddress
from .addresses import canonical_address
from .addresses import domain_of
from .queries import aliases
from .queries import mailboxes


class AliasRuleError(ValueError):
    """A proposed alias change breaks a rule; ``problems`` says what, in words for the user."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Forwarding:
    """Where mail for an address goes: the destinations, and whether it also stays."""

    destinations: tuple[str, ...]
    keep_copy: bool

    def rows(self, address: str) -> list[str]:
        """The alias rows that give this, in Postfix's terms (none: plain delivery)."""
        if not self.destinations:
            return []
        return sorted({*self.destinations, *([address] if self.keep_copy else [])})

    @classmethod
    def from_rows(cls, address: str, destinations: list[str]) -> Forwarding:
        """Read the rows of an address back into what the page shows."""
        others = tuple(d for d in destinations if d != address)
        return cls(others, keep_copy=not others or address in destinations)


def parse_destinations(lines: list[str]) -> tuple[list[str], list[str]]:
    """Canonicalise typed addresses; return (addresses, problems naming each bad line)."""
    found, problems, seen = [], [], set()
    for number, raw in enumerate(lines, start=1):
        text = raw.strip(" \t")
        if not text:
            continue
        try:
            address = canonical_address(text)
        except InvalidAddress as exc:
            shown = text if len(text) <= 80 else text[:77] + "..."
            problems.append(f"Line {number}: {shown!r} {exc}.")
            continue
        if address in seen:
            problems.append(f"Line {number}: {address} is listed twice.")
            continue
        seen.add(address)
        found.append(address)
    return found, problems


def check_forwarding(conn, address: str, wanted: Forwarding, max_destinations: int) -> None:
    """Raise AliasRuleError unless ``address`` may forward as ``wanted``."""
    problems = []
    if address in wanted.destinations:
        problems.append("Your own address is not a forwarding destination; use \u201ckeep a copy\u201d instead.")
    if len(wanted.destinations) > max_destinations:
        problems.append(f"At most {max_destinations} forwarding addresses are allowed.")
    if problems:
        raise AliasRuleError(problems)
    if wanted.keep_copy or not wanted.destinations:
        return
    path = aliases.forwarding_loop(conn, address, list(wanted.destinations))
    if path:
        hops = " \u2192 ".join([address, *path])
        raise AliasRuleError(
            [f"This would send mail round in a circle ({hops}) and it would never arrive. "
             "Keep a copy in your mailbox, or change the other forwarding first."]
        )


def check_new_alias_source(conn, source: str, domain: str, reserved: list[str], delimiter: str = "+") -> None:
    """Raise AliasRuleError unless ``source`` is free to become a new alias in ``domain``."""
    if domain_of(source) != domain:
        raise AliasRuleError([f"The address must end in @{domain}."])
    local = source.partition("@")[0]
    # With recipient_delimiter, Postfix looks up "bob+tag@" before "bob@": an alias
    # "bob+tag" would take mail meant for bob.
    if delimiter and any(ch in local for ch in delimiter):
        raise AliasRuleError([f"The address may not contain {' or '.join(delimiter)}."])
    if local in reserved:
        raise AliasRuleError([f"{source} is reserved for the administrators of {domain}."])
    if mailboxes.get_mailbox(conn, source) is not None:
        raise AliasRuleError([f"{source} is already in use."])
    if aliases.source_exists(conn, source):
        raise AliasRuleError([f"{source} is already in use."])


def check_new_alias_target(conn, source: str, destination: str) -> None:
    """Raise AliasRuleError if a new row ``source -> destination`` would close a circle."""
    path = aliases.forwarding_loop(conn, source, [destination])
    if path:
        hops = " \u2192 ".join([source, *path])
        raise AliasRuleError(
            [f"This would send mail round in a circle ({hops}) and it would never arrive. "
             "Change the forwarding of your mailbox first."]
        )


# An admin alias may be a small mailing list; far more than this is a job for a list server.
MAX_ALIAS_DESTINATIONS = 1000


def check_alias_destinations(conn, source: str, destinations: list[str]) -> None:
    """Raise AliasRuleError unless an admin alias ``source`` may deliver to ``destinations``."""
    if not destinations:
        raise AliasRuleError(["Give at least one address to deliver to."])
    if len(destinations) > MAX_ALIAS_DESTINATIONS:
        raise AliasRuleError([f"At most {MAX_ALIAS_DESTINATIONS} addresses are allowed."])
    if source in destinations:
        raise AliasRuleError(["An alias cannot deliver to itself."])
    path = aliases.forwarding_loop(conn, source, destinations)
    if path:
        hops = " \u2192 ".join([source, *path])
        raise AliasRuleError([f"This would send mail round in a circle ({hops}) and it would never arrive."])
