"""API tokens: a person who holds a role makes, narrows and revokes their own tokens."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta

from .. import access
from .. import notices
from ..access import Actor
from ..i18n import _
from ..queries import api_tokens as token_queries
from ..queries import audit
from ..queries import domains as domain_queries
from ..text import is_one_line
from . import domains as domain_rules

PREFIX = "mpt_"
MAX_NAME = 100
# Live tokens per person: each has its own call allowance, so this bounds what one person's tokens can ask.
MAX_LIVE_TOKENS = 20
LONGEST_VALIDITY = timedelta(days=3660)


class TokenRefused(ValueError):
    """The token cannot be made or revoked; the message says why, in the UI's language."""


@dataclass(frozen=True)
class Presented:
    """A token as a client presents it: its id and its secret."""

    token_id: int
    secret: str

    @property
    def secret_sha256(self) -> bytes:
        """What the database keeps of the secret."""
        return hashlib.sha256(self.secret.encode()).digest()


def parse(text: str) -> Presented | None:
    """Read ``mpt_<id>_<secret>``; None for anything else (the caller answers as for a wrong secret)."""
    if not text.startswith(PREFIX):
        return None
    number, _sep, secret = text[len(PREFIX):].partition("_")
    if not number.isascii() or not number.isdigit() or len(number) > 9 or len(secret) < 32 or len(secret) > 128:
        return None
    return Presented(int(number), secret)


def create_token(conn, actor: Actor, *, name: str, domains: list[str] | None, read_only: bool,
                 expires_at: datetime | None) -> str:
    """Make a token for the actor (a person holding a role, signed in to the pages), narrowed to ``domains``
    (None: all of theirs), reading only, or until ``expires_at``; return it in full, to be shown once."""
    name = " ".join(name.split())
    if not name or len(name) > MAX_NAME or not is_one_line(name):
        raise TokenRefused(_("Give the token a name of at most %(n)s characters.", n=MAX_NAME))
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise TokenRefused(_("The expiry date must be in the future."))
    if expires_at is not None and expires_at > datetime.now(UTC) + LONGEST_VALIDITY:
        raise TokenRefused(_("A token may be valid for ten years at most; leave the date empty for one that lasts"
                             " until it is revoked."))
    if actor.is_command_line or actor.token is not None:
        raise TokenRefused(_("Tokens are made on the portal's pages, by the person who will hold them."))
    secret = secrets.token_urlsafe(32)
    with conn.transaction():
        powers = access.powers_of(conn, actor)
        refusal = access.refusal_to_hold_token(powers)
        if refusal:
            raise TokenRefused(refusal)
        if token_queries.live_count(conn, actor.mailbox_id) >= MAX_LIVE_TOKENS:
            raise TokenRefused(_("You have %(n)s tokens in use; revoke one you no longer need first.",
                                 n=MAX_LIVE_TOKENS))
        domain_ids = None
        if domains is not None:
            domain_ids = []
            try:
                domains = [domain_rules.domain_name(text) for text in domains]
            except domain_rules.DomainRuleError as exc:
                raise TokenRefused(str(exc)) from None
            for domain_name in sorted(set(domains)):
                row = domain_queries.get_domain_by_name(conn, domain_name)
                if row is None or not powers.helps_with(row["id"]):
                    raise TokenRefused(_("You have no role in %(domain)s.", domain=domain_name))
                domain_ids.append(row["id"])
            if not domain_ids:
                raise TokenRefused(_("Choose at least one domain, or all of yours."))
        presented = Presented(0, secret)
        token_id = token_queries.create(conn, mailbox_id=actor.mailbox_id, name=name,
                                        secret_sha256=presented.secret_sha256, domain_ids=domain_ids,
                                        read_only=read_only, expires_at=expires_at)
        audit.record(conn, **access.audit_fields(actor, powers), action="api_token.create", target=actor.address,
                     summary={"token": token_id, "name": name, "read_only": read_only,
                              "domains": sorted(set(domains)) if domains is not None else None,
                              "expires_at": expires_at.isoformat() if expires_at else None})
        # A token acts with its holder's roles: its owner, and their recovery address, hear of every new one.
        notices.queue(conn, {"id": actor.mailbox_id, "email": actor.address}, "api_token_created",
                      notices.api_token_created, actor.address, name, notices.Change("user", actor.client_addr))
    return f"{PREFIX}{token_id}_{secret}"


def revoke_token(conn, actor: Actor, token_id: int) -> bool:
    """Revoke one of the actor's own tokens at once; False if it was revoked already."""
    if actor.is_command_line or actor.token is not None:
        raise TokenRefused(_("Tokens are revoked on the portal's pages, by the person who holds them."))
    with conn.transaction():
        row = token_queries.lock_own(conn, token_id, actor.mailbox_id)
        if row is None:
            raise TokenRefused(_("There is no such token."))
        revoked = token_queries.revoke(conn, token_id)
        if revoked:
            powers = access.powers_of(conn, actor)
            audit.record(conn, **access.audit_fields(actor, powers), action="api_token.revoke",
                         target=actor.address, summary={"token": token_id, "name": row["name"]})
    return revoked
