"""The rules every alias address and destination follows, shared by forwarding, admin aliases and import.

Everything here runs inside the caller's transaction, after
``aliases.lock_alias_graph``, so a check and the write it allows cannot be
overtaken by a concurrent save.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..addresses import InvalidAddress
from ..addresses import canonical_address
from ..addresses import domain_of
from ..i18n import _
from ..queries import aliases
from ..queries import mailboxes


class AliasRuleError(ValueError):
    """A proposed alias change breaks a rule; ``problems`` says what, in words for the user."""

    def __init__(self, problems: list[str], field: str | None = "destinations"):
        super().__init__("; ".join(problems))
        self.problems = problems
        self.field = field  # the form or API field at fault; None: the change as a whole


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
            problems.append(_("Line %(number)s: %(typed)s %(problem)s.", number=number, typed=repr(shown),
                              problem=str(exc)))
            continue
        if address in seen:
            problems.append(_("Line %(number)s: %(address)s is listed twice.", number=number, address=address))
            continue
        seen.add(address)
        found.append(address)
    return found, problems


def _is_self(forms: set[str], destination: str, delimiter: str) -> bool:
    """Whether ``destination`` is the address itself (``forms``: it and its forms on alias domains), with or
    without a recipient-delimiter tag: Postfix expands "alice+x" through alice's own rows, appending "+x" each
    time, for ever, and "alice@alias" through alice's."""
    return aliases.split_extension(destination, delimiter)[0] in forms


def check_forwarding(conn, address: str, wanted: Forwarding, max_destinations: int, delimiter: str = "+") -> None:
    """Raise AliasRuleError unless ``address`` may forward as ``wanted``."""
    problems = []
    forms = aliases.same_address_forms(conn, address)
    if any(_is_self(forms, d, delimiter) for d in wanted.destinations):
        problems.append(_("Your own address is not a forwarding destination; use \u201ckeep a copy\u201d instead."))
    if len(wanted.destinations) > max_destinations:
        problems.append(_("At most %(count)s forwarding addresses are allowed.", count=max_destinations))
    if problems:
        raise AliasRuleError(problems)
    if wanted.keep_copy or not wanted.destinations:
        return
    path = aliases.forwarding_loop(conn, address, list(wanted.destinations), delimiter)
    if path:
        hops = " \u2192 ".join([address, *path])
        raise AliasRuleError(
            [_("This would send mail round in a circle (%(hops)s) and it would never arrive. "
               "Keep a copy in your mailbox, or change the other forwarding first.", hops=hops)]
        )


def check_new_alias_source(conn, source: str, domain: str, reserved: list[str], delimiter: str = "+",
                           alias_domains: tuple[str, ...] = ()) -> None:
    """Raise AliasRuleError unless ``source`` is free to become a new alias in ``domain`` (or on one of its
    ``alias_domains``, where it would take the place of the same address in ``domain``)."""
    source_domain = domain_of(source)
    if source_domain != domain and source_domain not in alias_domains:
        if alias_domains:
            raise AliasRuleError([_("The address must end in @%(domain)s or in one of its alias domains"
                                    " (%(alias_domains)s).", domain=domain, alias_domains=", ".join(alias_domains))],
                                 field="address")
        raise AliasRuleError([_("The address must end in @%(domain)s.", domain=domain)], field="address")
    local = source.partition("@")[0]
    # With recipient_delimiter, Postfix looks up "bob+tag@" before "bob@": an alias
    # "bob+tag" would take mail meant for bob.
    if delimiter and any(ch in local for ch in delimiter):
        raise AliasRuleError([_("The address may not contain %(characters)s.",
                                characters=_(" or ").join(delimiter))], field="address")
    if local in reserved:
        raise AliasRuleError([_("%(address)s is reserved for the administrators of %(domain)s.",
                                address=source, domain=domain)], field="address")
    if mailboxes.get_mailbox(conn, source) is not None:
        raise AliasRuleError([_("%(address)s is already in use.", address=source)], field="address")
    if aliases.source_exists(conn, source):
        raise AliasRuleError([_("%(address)s is already in use.", address=source)], field="address")
    # A deleted mailbox's address is promised to nobody until its mail is purged:
    # whoever took it would receive mail meant for its former owner.
    if mailboxes.pending_removal(conn, source) is not None:
        raise AliasRuleError([_("%(address)s belonged to a deleted mailbox whose mail is still kept; it cannot be"
                                " used again until that mail is purged.", address=source)], field="address")
    if source_domain != domain:
        # On an alias domain, the address is a mailbox's (or a person's own address) through the domain: an
        # alias there would take mail meant for its owner.
        mirrored = f"{local}@{domain}"
        if (mailboxes.get_mailbox(conn, mirrored) is not None or aliases.is_personal(conn, mirrored)
                or mailboxes.pending_removal(conn, mirrored) is not None):
            raise AliasRuleError([_("%(address)s is %(owner)s through the alias domain %(alias_domain)s; it cannot"
                                    " deliver elsewhere.", address=source, owner=mirrored,
                                    alias_domain=source_domain)], field="address")


def check_not_shadowed(conn, address: str) -> None:
    """Raise AliasRuleError if an alias written on an alias domain already takes ``address``'s local part there:
    a new mailbox or personal address would not receive the mail sent to it through the alias domain."""
    shadow = aliases.alias_domain_shadow(conn, address)
    if shadow:
        raise AliasRuleError([_("%(alias)s is an alias on an alias domain of this domain; remove it before"
                                " %(address)s is used.", alias=shadow, address=address)], field="address")


def check_new_alias_target(conn, source: str, destination: str, delimiter: str = "+") -> None:
    """Raise AliasRuleError if a new row ``source -> destination`` would close a circle."""
    path = aliases.forwarding_loop(conn, source, [destination], delimiter)
    if path:
        hops = " \u2192 ".join([source, *path])
        raise AliasRuleError(
            [_("This would send mail round in a circle (%(hops)s) and it would never arrive. "
               "Change the forwarding of your mailbox first.", hops=hops)]
        )


# An admin alias may be a small mailing list; far more than this is a job for a list server.
MAX_ALIAS_DESTINATIONS = 1000


def check_alias_destinations(conn, source: str, destinations: list[str], delimiter: str = "+") -> None:
    """Raise AliasRuleError unless an admin alias ``source`` may deliver to ``destinations``."""
    if not destinations:
        raise AliasRuleError([_("Give at least one address to deliver to.")])
    if len(destinations) > MAX_ALIAS_DESTINATIONS:
        raise AliasRuleError([_("At most %(count)s addresses are allowed.", count=MAX_ALIAS_DESTINATIONS)])
    # Only the address itself: an alias x@alias -> x@target is no circle when x@target delivers (the walk
    # below finds the ones that are).
    if any(_is_self({source}, d, delimiter) for d in destinations):
        raise AliasRuleError([_("An alias cannot deliver to itself.")])
    path = aliases.forwarding_loop(conn, source, destinations, delimiter)
    if path:
        hops = " \u2192 ".join([source, *path])
        raise AliasRuleError([_("This would send mail round in a circle (%(hops)s) and it would never arrive.",
                                hops=hops)])


def first_circle(conn, sources: list[str], delimiter: str = "+") -> tuple[str, list[str]] | None:
    """The first of ``sources`` whose forwarding, as stored, closes a circle: (source, the hops back), or None.

    Sources without rows, or that keep a copy, are delivered by Postfix and skipped."""
    for source in sources:
        rows = aliases.destinations(conn, source)
        if not rows or source in rows:
            continue
        path = aliases.forwarding_loop(conn, source, rows, delimiter)
        if path:
            return source, path
    return None


def enabling_problem(conn, addresses: list[str], delimiter: str = "+") -> str | None:
    """Why enabling these mailboxes (or their domain) would break mail flow: a forwarding that closes a circle.

    The loop checks count disabled mailboxes as enabled, so no circle can be saved
    today; this catches one made before, or by hand in the database."""
    circle = first_circle(conn, addresses, delimiter)
    if circle:
        address, path = circle
        return _("Enabling %(address)s would send mail round in a circle (%(hops)s) and it would never arrive."
                 " Change its forwarding first.", address=address, hops=" \u2192 ".join([address, *path]))
    return None
