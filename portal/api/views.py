"""The API's endpoints. Like the pages' views they only parse, call a rule and answer; a domain or mailbox
outside the token's reach answers 404, as a missing one does."""

from __future__ import annotations

from flask import current_app
from flask import request

from .. import passwords
from .. import quota
from ..access import Actor
from ..addresses import InvalidAddress
from ..addresses import canonical_address
from ..addresses import canonical_domain
from ..db import get_db
from ..i18n import _
from ..queries import alias_domains as alias_domain_queries
from ..queries import aliases as alias_queries
from ..queries import domains as domain_queries
from ..queries import listing
from ..queries import mailboxes as mailbox_queries
from ..queries import roles as role_queries
from ..rules import addressing
from ..rules import aliases as alias_rules
from ..rules import domains as domain_rules
from ..rules import forwarding as forwarding_rules
from ..rules import helpdesk as helpdesk_rules
from ..rules import mailboxes as mailbox_rules
from ..rules import roles as role_rules
from ..text import is_one_line
from . import endpoint
from . import reading_powers
from . import spec
from .problems import ApiProblem

_TIME = {"type": "string", "format": "date-time"}
_ADDRESS = {"type": "string", "minLength": 3, "maxLength": 254}

DOMAIN = {
    "type": "object", "additionalProperties": False,
    "required": ["name", "active", "max_mailboxes", "max_aliases", "mailboxes", "aliases", "created_at"],
    "properties": {
        "name": {"type": "string"}, "active": {"type": "boolean"},
        "max_mailboxes": {"type": "integer", "description": "0: no limit"},
        "max_aliases": {"type": "integer", "description": "0: no limit"},
        "mailboxes": {"type": "integer"}, "aliases": {"type": "integer"},
        "alias_domains": {"type": "array", "items": {"type": "string"}},
        "created_at": _TIME,
    },
}
MAILBOX = {
    "type": "object", "additionalProperties": False,
    "required": ["address", "display_name", "active", "quota_bytes", "created_at"],
    "properties": {
        "address": {"type": "string"}, "display_name": {"type": "string"}, "active": {"type": "boolean"},
        "quota_bytes": {"type": "integer", "description": "0: the domain's default or no limit"},
        "used_bytes": {"type": "integer"}, "messages": {"type": "integer"},
        "password_must_change": {"type": "boolean"}, "disabled_reason": {"type": ["string", "null"]},
        "created_at": _TIME,
    },
}
ALIAS = {
    "type": "object", "additionalProperties": False, "required": ["address", "destinations"],
    "properties": {"address": {"type": "string"},
                   "destinations": {"type": "array", "items": {"type": "string"}},
                   "personal": {"type": "boolean", "description": "a mailbox owner's own address or forwarding"}},
}
_SIZE = {"type": ["integer", "string"], "description": "Bytes, or a size such as \"2G\" or \"500M\"; 0: none",
         "maxLength": 20, "minimum": 0, "maximum": quota.MAX_BYTES}
NEW_MAILBOX = {
    "type": "object", "additionalProperties": False, "required": ["local_part"],
    "properties": {
        "local_part": {"type": "string", "minLength": 1, "maxLength": 64},
        "display_name": {"type": "string", "maxLength": 255},
        "quota": _SIZE,
        "password": {"type": "string", "minLength": 1, "maxLength": 1024,
                     "description": "A one-time password, to be changed at the first sign-in to the portal. "
                                    "Left out: one is generated and answered once."},
    },
}
MAILBOX_CHANGE = {
    "type": "object", "additionalProperties": False, "minProperties": 1,
    "properties": {"display_name": {"type": "string", "maxLength": 255}, "quota": _SIZE,
                   "active": {"type": "boolean"}},
}
ALIAS_BODY = {
    "type": "object", "additionalProperties": False, "required": ["destinations"],
    "properties": {"destinations": {"type": "array", "minItems": 1, "maxItems": 1000,
                                    "items": {"type": "string", "minLength": 1, "maxLength": 254}}},
}
NEW_ALIAS = {**ALIAS_BODY, "required": ["address", "destinations"],
             "properties": {**ALIAS_BODY["properties"],
                            "address": {"type": "string", "minLength": 1, "maxLength": 254,
                                        "description": "x@domain, x@alias-domain, or @domain for the catch-all"}}}
ONE_TIME_PASSWORD = {"type": "object", "additionalProperties": False, "required": ["password"],
                     "properties": {"password": {"type": "string"},
                                    "address": {"type": "string"}}}


def _time(value) -> str | None:
    return value.isoformat() if value else None


def _domain_json(row: dict, alias_domains: list[str]) -> dict:
    return {"name": row["name"], "active": row["active"], "max_mailboxes": row["max_mailboxes"],
            "max_aliases": row["max_aliases"], "mailboxes": row["mailboxes"], "aliases": row["aliases"],
            "alias_domains": alias_domains, "created_at": _time(row["created_at"])}


def _mailbox_json(row: dict) -> dict:
    found = {"address": row["email"], "display_name": row["display_name"], "active": row["active"],
             "quota_bytes": row["quota_bytes"], "created_at": _time(row["created_at"])}
    for key in ("used_bytes", "messages", "password_must_change", "disabled_reason"):
        if key in row:
            found[key] = row[key]
    return found


def _search(args: dict) -> listing.Search:
    return listing.Search(args["q"] or "", "contains" if args["q"] else "prefix")


def _page(fetch, args: dict, to_json) -> dict:
    try:
        page = fetch(_search(args), args["after"], args["limit"])
    except listing.InvalidCursor:
        raise ApiProblem(400, _("The cursor is not valid: start from the first page."),
                         errors={"after": [_("Not a valid value.")]}) from None
    return {"items": [to_json(row) for row in page.rows], "next": page.next_after}


def _administered_domain(actor: Actor, name: str) -> dict:
    try:
        canonical = canonical_domain(name)  # as addresses are: "Example.COM.", or its Unicode form, names it too
    except InvalidAddress:
        canonical = None
    row = domain_queries.get_domain_by_name(get_db(), canonical) if canonical else None
    if row is None or not reading_powers(actor).administers(row["id"]):
        raise ApiProblem(404, _("There is no domain %(domain)s that you administer.", domain=name.lower()))
    return row


def _mailbox(actor: Actor, address: str, *, helping: bool = False) -> dict:
    try:
        email = canonical_address(address)
    except InvalidAddress:
        email = None
    row = mailbox_queries.get_mailbox(get_db(), email) if email else None
    powers = reading_powers(actor)
    if row is None or not (powers.helps_with(row["domain_id"]) if helping else powers.administers(row["domain_id"])):
        raise ApiProblem(404, _("There is no mailbox %(address)s that you may manage.", address=address.lower()))
    return row


def _size(value, field: str = "quota") -> int:
    """Bytes from a JSON number of bytes or a size such as "2G", with the pages' limits and messages."""
    try:
        return quota.parse_size(f"{value} B" if isinstance(value, int) else value)
    except quota.InvalidSize as exc:
        raise ApiProblem(400, str(exc), errors={field: [str(exc)]}) from None


def _check_display_name(body: dict) -> None:
    if not is_one_line(body.get("display_name", "")):
        message = _("The name must be one line of at most 255 characters, without control characters.")
        raise ApiProblem(400, message, errors={"display_name": [message]})


def _rule_problem(exc: Exception, field: str | None = None) -> ApiProblem:
    status = 403 if isinstance(exc, (mailbox_rules.MailboxRefused, alias_rules.AliasRefused)) else 409
    problems = getattr(exc, "problems", None) or [str(exc)]
    return ApiProblem(status, " ".join(problems), errors={field: problems} if field else None)


@endpoint("GET", "/openapi.json", summary="This API's OpenAPI 3.1 description.", response={"type": "object"},
          authenticated=False)
def openapi():
    """The OpenAPI document, made from the same declarations as the routes."""
    return spec.openapi_document(request.url_root.rstrip("/") + "/api/v1")


@endpoint("GET", "/me", summary="The token's holder, roles and narrowing.", response={
    "type": "object", "additionalProperties": False, "required": ["address", "read_only", "domains"],
    "properties": {"address": {"type": "string"}, "read_only": {"type": "boolean"},
                   "domains": {"type": ["array", "null"], "items": {"type": "string"},
                               "description": "null: every domain of the holder"},
                   "superadmin": {"type": "boolean"}}})
def me(actor: Actor):
    """Who acts with this token, and how it is narrowed."""
    powers = reading_powers(actor)
    domains = None
    if actor.token.domain_ids is not None:
        domains = sorted(r["name"] for r in (domain_queries.get_domain(get_db(), i) for i in actor.token.domain_ids)
                         if r is not None)
    return {"address": actor.address, "read_only": actor.token.read_only, "domains": domains,
            "superadmin": powers.superadmin}


@endpoint("GET", "/domains", summary="The domains this token may administer, a page at a time.",
          response=spec.page_of(DOMAIN), query=spec.CURSOR_QUERY)
def list_domains(actor: Actor, args: dict):
    """Domains in reach, by name."""
    powers = reading_powers(actor)
    scope = None if powers.superadmin else sorted(powers.admin_of)

    def fetch(search, after, limit):
        page = listing.domains(get_db(), scope, search, after, limit=limit)
        linked = alias_domain_queries.of_domains(get_db(), [d["id"] for d in page.rows])
        return listing.Page([{**d, "alias_domains": linked.get(d["id"], [])} for d in page.rows], page.next_after)

    return _page(fetch, args, lambda d: _domain_json(d, d["alias_domains"]))


@endpoint("GET", "/domains/{domain}", summary="One domain.", response=DOMAIN)
def get_domain(actor: Actor, domain: str):
    """A domain with its counts and alias domains."""
    row = _administered_domain(actor, domain)
    page = listing.domains(get_db(), [row["id"]], listing.Search(), None, limit=1)
    if not page.rows:  # deleted a moment ago
        raise ApiProblem(404, _("There is no domain %(domain)s that you administer.", domain=row["name"]))
    return _domain_json(page.rows[0], alias_domain_queries.names_for(get_db(), row["name"]))


@endpoint("GET", "/domains/{domain}/mailboxes", summary="A domain's mailboxes with usage, a page at a time.",
          response=spec.page_of(MAILBOX), query=spec.CURSOR_QUERY)
def list_mailboxes(actor: Actor, domain: str, args: dict):
    """Mailboxes of a domain, by address."""
    row = _administered_domain(actor, domain)
    return _page(lambda s, a, n: listing.mailboxes(get_db(), row["id"], s, a, limit=n), args, _mailbox_json)


@endpoint("POST", "/domains/{domain}/mailboxes", summary="Create a mailbox with a one-time password.",
          response={**ONE_TIME_PASSWORD, "required": ["address", "password"]}, writes=True, body=NEW_MAILBOX,
          status=201)
def create_mailbox(actor: Actor, domain: str, body: dict):
    """Create a mailbox; its password must be changed on the portal before mail clients may use it."""
    row = _administered_domain(actor, domain)
    config = current_app.config
    try:
        address = mailbox_rules.address_for(body["local_part"], row)
    except mailbox_rules.MailboxRuleError as exc:
        raise ApiProblem(400, str(exc), errors={"local_part": [str(exc)]}) from None
    _check_display_name(body)
    password = body.get("password") or passwords.generate_password()
    if "password" in body:
        problems = passwords.configured_policy_problems(config, password, address=address)
        if problems:
            raise ApiProblem(400, " ".join(problems), errors={"password": problems})
    try:
        mailbox_rules.create_mailbox(
            get_db(), actor, domain_id=row["id"], address=address,
            password_hash=passwords.hash_password(password, config["PASSWORD_SCHEME"]),
            quota_bytes=_size(body.get("quota", 0)), display_name=body.get("display_name", "").strip(),
            reserved=list(config["RESERVED_LOCAL_PARTS"]), must_change=True)
    except mailbox_rules.MailboxRefused:
        raise ApiProblem(404, _("There is no domain %(domain)s that you administer.", domain=row["name"])) from None
    except mailbox_rules.MailboxRuleError as exc:
        raise _rule_problem(exc, "local_part") from None
    return {"address": address, "password": password}


@endpoint("GET", "/mailboxes/{address}", summary="One mailbox.", response=MAILBOX)
def get_mailbox(actor: Actor, address: str):
    """A mailbox: limit, state and name (helpdesk staff may read the mailboxes they help with)."""
    return _mailbox_json(_mailbox(actor, address, helping=True))


@endpoint("PATCH", "/mailboxes/{address}", summary="Change a mailbox's name, size limit or state.",
          response=MAILBOX, writes=True, body=MAILBOX_CHANGE)
def change_mailbox(actor: Actor, address: str, body: dict):
    """Change what the body names; the rest stays."""
    row = _mailbox(actor, address)
    _check_display_name(body)
    try:
        mailbox_rules.update_mailbox(
            get_db(), actor, mailbox=row,
            quota_bytes=_size(body["quota"]) if "quota" in body else row["quota_bytes"],
            active=body.get("active", row["active"]), password_hash=None,
            display_name=body.get("display_name", row["display_name"]).strip(),
            delimiter=current_app.config["RECIPIENT_DELIMITER"])
    except mailbox_rules.MailboxRuleError as exc:
        raise _rule_problem(exc) from None
    return _mailbox_json(_mailbox(actor, row["email"]))


@endpoint("DELETE", "/mailboxes/{address}", summary="Delete a mailbox; its mail is kept for the grace period.",
          response=None, writes=True, status=204)
def delete_mailbox(actor: Actor, address: str):
    """Delete a mailbox and the alias rows that delivered to it."""
    row = _mailbox(actor, address)
    try:
        mailbox_rules.delete_mailbox(get_db(), actor, mailbox=row, mail_root=current_app.config["MAIL_ROOT"],
                                     grace_days=int(current_app.config["MAILBOX_PURGE_GRACE_DAYS"]))
    except mailbox_rules.MailboxRuleError as exc:
        raise _rule_problem(exc) from None


@endpoint("POST", "/mailboxes/{address}/password-reset",
          summary="Give a mailbox a generated one-time password (helpdesk).", response=ONE_TIME_PASSWORD,
          writes=True)
def reset_password(actor: Actor, address: str):
    """A new one-time password, answered once; the mailbox's sessions end."""
    row = _mailbox(actor, address, helping=True)
    try:
        password = helpdesk_rules.reset_password(get_db(), actor, row,
                                                 scheme=current_app.config["PASSWORD_SCHEME"])
    except helpdesk_rules.SupportRefused as exc:
        raise ApiProblem(403, str(exc)) from None
    return {"address": row["email"], "password": password}


@endpoint("GET", "/domains/{domain}/aliases", summary="A domain's aliases, a page at a time.",
          response=spec.page_of(ALIAS), query=spec.CURSOR_QUERY)
def list_aliases(actor: Actor, domain: str, args: dict):
    """Alias addresses of a domain with their destinations."""
    row = _administered_domain(actor, domain)
    return _page(lambda s, a, n: listing.aliases(get_db(), row["id"], s, a, limit=n), args,
                 # A mailbox's forwarding (its address as the source) is its owner's, as a personal address is:
                 # neither is changed here.
                 lambda r: {"address": r["source"], "destinations": list(r["destinations"] or []),
                            "personal": bool(r["personal"] or r["mailbox"])})


def _alias_source(domain: dict, address: str) -> str:
    on_domains = [domain["name"], *alias_domain_queries.names_for(get_db(), domain["name"])]
    address = address.strip().lower()
    if address.startswith("@"):
        if address[1:] in on_domains:
            return address
    else:
        try:
            source = canonical_address(address)
        except InvalidAddress:
            source = ""
        if source.rpartition("@")[2] in on_domains:
            return source
    message = _("Give an address on %(domain)s or one of its alias domains, or @%(domain)s for the catch-all.",
                domain=domain["name"])
    raise ApiProblem(400, message, errors={"address": [message]})


def _save_alias(actor: Actor, domain: dict, source: str, destinations: list[str], *, create: bool) -> dict:
    parsed, problems = addressing.parse_destinations(destinations)
    if problems:
        raise ApiProblem(400, " ".join(problems), errors={"destinations": problems})
    try:
        alias_rules.save_alias(get_db(), actor, domain=domain, source=source, destinations=parsed, create=create,
                               reserved=list(current_app.config["RESERVED_LOCAL_PARTS"]),
                               delimiter=current_app.config["RECIPIENT_DELIMITER"])
    except alias_rules.AliasNotFound:
        raise ApiProblem(404, _("There is no alias %(address)s that you may change.", address=source)) from None
    except addressing.AliasRuleError as exc:
        raise _rule_problem(exc, exc.field) from None
    return {"address": source, "destinations": alias_queries.destinations(get_db(), source), "personal": False}


@endpoint("POST", "/domains/{domain}/aliases", summary="Create an alias or the catch-all.", response=ALIAS,
          writes=True, body=NEW_ALIAS, status=201)
def create_alias(actor: Actor, domain: str, body: dict):
    """A new alias on the domain or one of its alias domains."""
    row = _administered_domain(actor, domain)
    return _save_alias(actor, row, _alias_source(row, body["address"]), body["destinations"], create=True)


def _editable_alias(actor: Actor, domain: str, address: str) -> tuple[dict, str]:
    row = _administered_domain(actor, domain)
    source = _alias_source(row, address)
    if not alias_rules.editable(get_db(), actor, row, source, list(current_app.config["RESERVED_LOCAL_PARTS"])):
        raise ApiProblem(404, _("There is no alias %(address)s that you may change.", address=source))
    return row, source


# An alias address may hold a "/" (RFC 5322 allows it; it names no folder), sent as %2F: the alias converter takes
# it (portal/converters.py).
@endpoint("PUT", "/domains/{domain}/aliases/{address}", summary="Replace an alias's destinations.",
          response=ALIAS, writes=True, body=ALIAS_BODY, converters={"address": "alias"})
def replace_alias(actor: Actor, domain: str, address: str, body: dict):
    """Where an existing alias delivers, all at once."""
    row, source = _editable_alias(actor, domain, address)
    return _save_alias(actor, row, source, body["destinations"], create=False)


@endpoint("DELETE", "/domains/{domain}/aliases/{address}", summary="Remove an alias and all its rows.",
          response=None, writes=True, status=204, converters={"address": "alias"})
def delete_alias(actor: Actor, domain: str, address: str):
    """Remove an alias."""
    row, source = _editable_alias(actor, domain, address)
    try:
        alias_rules.delete_alias(get_db(), actor, domain=row, source=source,
                                 reserved=list(current_app.config["RESERVED_LOCAL_PARTS"]))
    except alias_rules.AliasNotFound:
        raise ApiProblem(404, _("There is no alias %(address)s that you may change.", address=source)) from None
    except addressing.AliasRuleError as exc:
        raise _rule_problem(exc) from None


FORWARDING = {
    "type": "object", "additionalProperties": False, "required": ["destinations", "keep_copy"],
    "properties": {"destinations": {"type": "array", "maxItems": 1000,
                                    "items": {"type": "string", "minLength": 1, "maxLength": 254},
                                    "description": "Where mail to the mailbox goes; empty: delivered here only"},
                   "keep_copy": {"type": "boolean", "description": "also keep it in the mailbox"}},
}


def _forwarding_json(value) -> dict:
    return {"destinations": list(value.destinations), "keep_copy": value.keep_copy}


@endpoint("GET", "/mailboxes/{address}/forwarding", summary="Where a mailbox's mail goes.", response=FORWARDING)
def get_forwarding(actor: Actor, address: str):
    """A mailbox's forwarding, as its owner sees it."""
    row = _mailbox(actor, address)
    return _forwarding_json(forwarding_rules.current_forwarding(get_db(), row["email"]))


@endpoint("PUT", "/mailboxes/{address}/forwarding", summary="Replace a mailbox's forwarding.",
          response=FORWARDING, writes=True, body=FORWARDING)
def replace_forwarding(actor: Actor, address: str, body: dict):
    """Forward a mailbox's mail, with or without a copy kept; no loops, nobody else's mail."""
    row = _mailbox(actor, address)
    parsed, problems = addressing.parse_destinations(body["destinations"])
    if problems:
        raise ApiProblem(400, " ".join(problems), errors={"destinations": problems})
    wanted = addressing.Forwarding(tuple(parsed), keep_copy=body["keep_copy"] or not parsed)
    try:
        _before, after = forwarding_rules.save_forwarding_of(
            get_db(), actor, row, wanted, int(current_app.config["FORWARD_MAX_DESTINATIONS"]),
            current_app.config["RECIPIENT_DELIMITER"])
    except forwarding_rules.ForwardingRefused as exc:
        raise ApiProblem(403, " ".join(exc.problems)) from None
    except addressing.AliasRuleError as exc:
        raise _rule_problem(exc, "destinations") from None
    return _forwarding_json(after)


REASON = {"type": "object", "additionalProperties": False, "required": ["reason"],
          "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 500,
                                    "description": "Why, for the audit log (one line)"}}}
_DONE = {"type": "object", "additionalProperties": False, "required": ["address", "changed"],
         "properties": {"address": {"type": "string"}, "changed": {"type": "boolean"}}}


def _support(exc: helpdesk_rules.SupportRefused) -> ApiProblem:
    return ApiProblem(403, str(exc))


@endpoint("POST", "/mailboxes/{address}/unlock", summary="Forget the failed sign-ins counted against a mailbox.",
          response=_DONE, writes=True)
def unlock_mailbox(actor: Actor, address: str):
    """Clear the mailbox's sign-in lock (helpdesk)."""
    row = _mailbox(actor, address, helping=True)
    try:
        cleared = helpdesk_rules.unlock(get_db(), actor, row)
    except helpdesk_rules.SupportRefused as exc:
        raise _support(exc) from None
    return {"address": row["email"], "changed": cleared is not None}


@endpoint("POST", "/mailboxes/{address}/disable", summary="Disable a mailbox: mail to it is refused, sessions end.",
          response=_DONE, writes=True, body=REASON)
def disable_mailbox(actor: Actor, address: str, body: dict):
    """Disable, with a reason kept in the audit log (helpdesk)."""
    row = _mailbox(actor, address, helping=True)
    reason = body["reason"].strip(" ")  # as the pages: one line, or refused
    if not reason or not is_one_line(reason):
        message = _("Write it on one line, without control characters.")
        raise ApiProblem(400, message, errors={"reason": [message]})
    try:
        changed = helpdesk_rules.set_active(get_db(), actor, row, active=False, reason=reason,
                                            delimiter=current_app.config["RECIPIENT_DELIMITER"])
    except helpdesk_rules.SupportRefused as exc:
        raise _support(exc) from None
    return {"address": row["email"], "changed": changed}


@endpoint("POST", "/mailboxes/{address}/enable", summary="Enable a disabled mailbox.", response=_DONE,
          writes=True)
def enable_mailbox(actor: Actor, address: str):
    """Enable again (helpdesk)."""
    row = _mailbox(actor, address, helping=True)
    try:
        changed = helpdesk_rules.set_active(get_db(), actor, row, active=True, reason="",
                                            delimiter=current_app.config["RECIPIENT_DELIMITER"])
    except helpdesk_rules.SupportRefused as exc:
        raise _support(exc) from None
    return {"address": row["email"], "changed": changed}


_COUNT = {"type": "integer", "minimum": 0, "maximum": 10_000_000}
DOMAIN_SETTINGS = {
    "active": {"type": "boolean"}, "max_mailboxes": _COUNT, "max_aliases": _COUNT,
    "default_quota": _SIZE, "max_quota": _SIZE, "allow_personal_aliases": {"type": "boolean"},
    "max_personal_aliases": {"type": "integer", "minimum": 0, "maximum": 1000},
}
NEW_DOMAIN = {"type": "object", "additionalProperties": False, "required": ["name"],
              "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 253}, **DOMAIN_SETTINGS}}
DOMAIN_CHANGE = {"type": "object", "additionalProperties": False, "minProperties": 1, "properties": DOMAIN_SETTINGS}


def _settings(body: dict, current: dict | None = None) -> dict:
    base = current or dict(domain_rules.DEFAULT_SETTINGS)
    values = {key: body.get(key, base[key]) for key in ("active", "max_mailboxes", "max_aliases",
                                                         "allow_personal_aliases", "max_personal_aliases")}
    default_quota = _size(body["default_quota"], "default_quota") if "default_quota" in body \
        else base["default_quota_bytes"]
    max_quota = _size(body["max_quota"], "max_quota") if "max_quota" in body else base["max_quota_bytes"]
    try:
        return domain_rules.settings_from(f"{default_quota} B", f"{max_quota} B", **values)
    except domain_rules.DomainRuleError as exc:
        raise ApiProblem(400, str(exc)) from None


def _domain_problem(exc: Exception) -> ApiProblem:
    if isinstance(exc, (domain_rules.DomainRefused, mailbox_rules.MailboxRefused)):
        return ApiProblem(403, str(exc))
    return ApiProblem(400 if isinstance(exc, domain_rules.InvalidDomainInput) else 409, str(exc))


@endpoint("POST", "/domains", summary="Create a domain (superadmin).", response=DOMAIN, writes=True,
          body=NEW_DOMAIN, status=201)
def create_domain(actor: Actor, body: dict):
    """A new domain with its settings; the rest take their defaults."""
    try:
        name = domain_rules.create_domain(get_db(), actor, name=body["name"], settings=_settings(body))
    except domain_rules.DomainRuleError as exc:
        raise _domain_problem(exc) from None
    return get_domain.__wrapped__(actor=actor, domain=name)


@endpoint("PATCH", "/domains/{domain}", summary="Change a domain's settings and limits (superadmin).",
          response=DOMAIN, writes=True, body=DOMAIN_CHANGE)
def change_domain(actor: Actor, domain: str, body: dict):
    """Change what the body names; the rest stays."""
    row = domain_queries.get_domain(get_db(), _administered_domain(actor, domain)["id"])
    if row is None:
        raise ApiProblem(404, _("There is no domain %(domain)s that you administer.", domain=domain.lower()))
    try:
        domain_rules.update_domain(get_db(), actor, domain=row,
                                   settings=_settings(body, domain_rules.current_settings(row)),
                                   delimiter=current_app.config["RECIPIENT_DELIMITER"])
    except domain_rules.DomainRuleError as exc:
        raise _domain_problem(exc) from None
    return get_domain.__wrapped__(actor=actor, domain=row["name"])


@endpoint("DELETE", "/domains/{domain}", summary="Delete a domain with its mailboxes and aliases (superadmin);"
          " the mail is kept for the grace period.", response=None, writes=True, status=204)
def delete_domain(actor: Actor, domain: str):
    """Delete a domain."""
    row = _administered_domain(actor, domain)
    try:
        mailbox_rules.delete_domain(get_db(), actor, domain=row, mail_root=current_app.config["MAIL_ROOT"],
                                    grace_days=int(current_app.config["MAILBOX_PURGE_GRACE_DAYS"]))
    except mailbox_rules.MailboxRuleError as exc:
        raise _domain_problem(exc) from None


ROLE = {"type": "object", "additionalProperties": False, "required": ["id", "address", "role", "domain"],
        "properties": {"id": {"type": "integer"}, "address": {"type": "string"},
                       "role": {"enum": ["superadmin", "domain_admin", "helpdesk"]},
                       "domain": {"type": ["string", "null"], "description": "null: every domain"},
                       "created_at": _TIME}}
NEW_ROLE = {"type": "object", "additionalProperties": False, "required": ["address", "role"],
            "properties": {"address": _ADDRESS, "role": {"enum": ["superadmin", "domain_admin", "helpdesk"]},
                           "domain": {"type": ["string", "null"], "maxLength": 253}}}


def _role_json(row: dict) -> dict:
    return {"id": row["id"], "address": row["email"], "role": row["role"], "domain": row["domain"],
            **({"created_at": _time(row["created_at"])} if "created_at" in row else {})}


def _superadmin_reads(actor: Actor) -> None:
    if not reading_powers(actor).superadmin:
        raise ApiProblem(403, _("Only a superadmin can give or take back roles."))


@endpoint("GET", "/roles", summary="Everyone who holds a role (superadmin).", response=spec.page_of(ROLE),
          query=spec.CURSOR_QUERY)
def list_roles(actor: Actor, args: dict):
    """Roles, by holder's address."""
    _superadmin_reads(actor)
    return _page(lambda s, a, n: listing.roles(get_db(), s, a, limit=n), args, _role_json)


@endpoint("POST", "/roles", summary="Give a mailbox a role (superadmin).", response=ROLE, writes=True,
          body=NEW_ROLE, status=201)
def grant_role(actor: Actor, body: dict):
    """Grant a role; granting one already held changes nothing."""
    domain = body.get("domain")
    if domain is not None and not domain.strip():
        # Only null means every domain: an empty column in a provisioning script must not grant them all.
        raise ApiProblem(400, _("Some fields are not valid."),
                         errors={"domain": [_("Give a domain name, or null for every domain.")]})
    try:
        _granted, mailbox, role_name, domain_row = role_rules.grant(
            get_db(), actor, address=body["address"], role=body["role"], domain=domain)
    except role_rules.RoleError as exc:
        if not reading_powers(actor).superadmin:
            raise ApiProblem(403, str(exc)) from None
        raise ApiProblem(400 if isinstance(exc, role_rules.InvalidRoleInput) else 409, str(exc)) from None
    role_id = role_queries.held_role_id(get_db(), mailbox["id"], role_name, domain_row["id"] if domain_row else None)
    return {"id": role_id, "address": mailbox["email"], "role": role_name,
            "domain": domain_row["name"] if domain_row else None}


@endpoint("DELETE", "/roles/{role_id}", summary="Take a role back (superadmin; never the last superadmin's).",
          response=None, writes=True, status=204)
def revoke_role(actor: Actor, role_id: str):
    """Revoke one held role."""
    _superadmin_reads(actor)
    held = role_queries.get_role(get_db(), int(role_id)) if role_id.isascii() and role_id.isdigit() \
        and len(role_id) < 10 else None
    if held is None:
        raise ApiProblem(404, _("There is no such role."))
    try:
        role_rules.revoke(get_db(), actor, address=held["email"], role=held["role"], domain=held["domain"])
    except role_rules.RoleError as exc:
        raise ApiProblem(409, str(exc)) from None


AUDIT_ENTRY = {
    "type": "object", "additionalProperties": False,
    "required": ["at", "actor", "actor_role", "action", "target", "domain", "summary"],
    "properties": {"at": _TIME, "actor": {"type": "string"}, "actor_role": {"type": "string"},
                   "client_addr": {"type": ["string", "null"]}, "action": {"type": "string"},
                   "target": {"type": "string"}, "domain": {"type": "string"}, "summary": {"type": "object"},
                   "token": {"type": ["integer", "null"], "description": "the API token used, if one was"}},
}
AUDIT_QUERY = {
    "after": spec.CURSOR_QUERY["after"], "limit": spec.CURSOR_QUERY["limit"],
    "actor": {"type": "string", "maxLength": 254}, "target": {"type": "string", "maxLength": 254},
    "action": {"type": "string", "maxLength": 64},
    "since": {"type": "string", "format": "date-time", "maxLength": 40},
    "until": {"type": "string", "format": "date-time", "maxLength": 40},
}


def _instant(args: dict, name: str):
    from datetime import UTC
    from datetime import datetime

    if not args[name]:
        return None
    try:
        value = datetime.fromisoformat(args[name])
    except ValueError:
        raise ApiProblem(400, _("The query parameter %(name)s is not valid.", name=name),
                         errors={name: [_("Must be a %(format)s.", format="date-time")]}) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@endpoint("GET", "/audit", summary="Who changed what: every row for superadmins, their domains' for domain"
          " admins; newest first.", response=spec.page_of(AUDIT_ENTRY), query=AUDIT_QUERY)
def audit_log(actor: Actor, args: dict):
    """The audit log in the token's reach, filtered."""
    powers = reading_powers(actor)
    scope = None
    if not powers.superadmin:
        domains = [domain_queries.get_domain(get_db(), domain_id) for domain_id in sorted(powers.admin_of)]
        scope = [listing.AuditDomain(d["name"], d["created_at"]) for d in domains if d]
        if not scope:
            raise ApiProblem(403, _("You are not allowed to do this."))
    filters = listing.AuditFilter(actor=(args["actor"] or "").lower() or None,
                                  target=(args["target"] or "").lower() or None, action=args["action"] or None,
                                  since=_instant(args, "since"), until=_instant(args, "until"))
    try:
        page = listing.audit_entries(get_db(), scope, filters, args["after"], limit=args["limit"])
    except listing.InvalidCursor:
        raise ApiProblem(400, _("The cursor is not valid: start from the first page."),
                         errors={"after": [_("Not a valid value.")]}) from None
    return {"items": [{"at": _time(r["at"]), "actor": r["actor"], "actor_role": r["actor_role"],
                       "client_addr": r["client_addr"], "action": r["action"],
                       "target": r["target"], "domain": r["domain"], "summary": r["summary"],
                       "token": r["token_id"]} for r in page.rows],
            "next": page.next_after}
