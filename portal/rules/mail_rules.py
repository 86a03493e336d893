"""A mailbox's out-of-office reply and filters: checked, stored in PostgreSQL, and written to Dovecot as one
Sieve script, all in one transaction (if Dovecot refuses the script or cannot be reached, nothing is kept).

The user changes both on the account pages; a domain admin or helpdesk member may switch the reply on for
someone in their scope (someone on sick leave), which the audit log records and the user's page shows.
A script another client made active (Roundcube, Thunderbird over ManageSieve) is never replaced silently:
the user chooses to keep it alongside the portal's rules, or to replace it.
"""

from __future__ import annotations

import dataclasses
from datetime import date

from .. import access
from .. import doveadm
from .. import sieve
from ..access import Actor
from ..addresses import InvalidAddress
from ..addresses import canonical_address
from ..i18n import _
from ..queries import audit
from ..queries import mail_rules as queries
from ..queries import mailboxes as mailbox_queries
from . import addressing
from .addressing import AliasRuleError
from .addressing import Forwarding

MOST_FILTERS = 20
MOST_DAYS_BETWEEN_REPLIES = 30
KEEP = "keep"
REPLACE = "replace"


class MailRulesRefused(Exception):
    """The reply or the filters break a rule; ``problems`` says what, in words for the user."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


class MailRulesUnavailable(Exception):
    """Dovecot cannot take the script now (not configured, or not reachable); nothing was changed."""


class OtherScriptActive(Exception):
    """Another client's script is the active one: the user must choose to keep it alongside or replace it."""

    def __init__(self, name: str, text: str):
        super().__init__(name)
        self.name = name
        self.text = text


def _text_problems(label: str, text: str, *, multiline: bool = False) -> list[str]:
    problem = sieve.text_problem(text, multiline=multiline)
    if problem == "not-utf8":
        return [_("%(field)s holds characters that are not valid text.", field=label)]
    if problem == "control":
        if multiline:
            return [_("%(field)s holds control characters.", field=label)]
        return [_("%(field)s must be one line, without control characters.", field=label)]
    return []


def vacation_problems(vacation: sieve.Vacation, candidates: list[str], today: date) -> list[str]:
    """What is wrong with an out-of-office reply (empty: nothing). ``candidates``: the addresses it may answer."""
    problems = _text_problems(_("The subject"), vacation.subject)
    problems += _text_problems(_("The message"), vacation.body, multiline=True)
    if len(vacation.subject) > 200:
        problems.append(_("The subject may have at most %(count)s characters.", count=200))
    if len(vacation.body) > 10000:
        problems.append(_("The message may have at most %(count)s characters.", count=10000))
    if vacation.enabled and not vacation.subject.strip():
        problems.append(_("Write a subject for the reply."))
    if vacation.enabled and not vacation.body.strip():
        problems.append(_("Write the message of the reply."))
    if not 1 <= vacation.interval_days <= MOST_DAYS_BETWEEN_REPLIES:
        problems.append(_("Answer the same sender again after 1 to %(count)s days.", count=MOST_DAYS_BETWEEN_REPLIES))
    if vacation.first_day and vacation.last_day and vacation.first_day > vacation.last_day:
        problems.append(_("The last day comes before the first day."))
    if vacation.enabled and vacation.last_day and vacation.last_day < today:
        problems.append(_("The last day has passed already."))
    unknown = sorted(set(vacation.addresses) - set(candidates))
    if unknown:
        problems.append(_("%(addresses)s does not deliver to this mailbox.", addresses=", ".join(unknown)))
    if vacation.enabled and not vacation.addresses:
        problems.append(_("Choose at least one address to answer for."))
    return problems


def _folder_problems(folder: str) -> list[str]:
    problems = _text_problems(_("The folder"), folder)
    if not folder.strip() or len(folder) > 100:
        problems.append(_("Name a folder of 1 to %(count)s characters.", count=100))
    elif folder != folder.strip() or folder.startswith((".", "/")) or any(ch in folder for ch in "*%"):
        problems.append(_("A folder name may not start with . or /, end with a space, or hold %(characters)s.",
                           characters="* %"))
    return problems


def checked_filters(conn, address: str, wanted: list[dict], max_destinations: int,
                    delimiter: str) -> list[dict]:
    """The filters as they will be stored (addresses in canonical form); MailRulesRefused with every problem."""
    problems: list[str] = []
    if len(wanted) > MOST_FILTERS:
        problems.append(_("At most %(count)s filters are allowed.", count=MOST_FILTERS))
    kept: list[dict] = []
    for number, rule in enumerate(wanted, start=1):
        found: list[str] = []
        if (rule.get("field") not in sieve.FILTER_FIELDS or rule.get("match") not in sieve.FILTER_MATCHES
                or rule.get("action") not in sieve.FILTER_ACTIONS):
            found.append(_("Choose what to look at, how to compare and what to do."))
            problems += [_("Filter %(number)s: %(problem)s", number=number, problem=p) for p in found]
            continue
        value = str(rule.get("value") or "")
        argument = str(rule.get("argument") or "")
        found += _text_problems(_("The text to look for"), value)
        if not value.strip() or len(value) > 200:
            found.append(_("Give 1 to %(count)s characters to look for.", count=200))
        if rule["action"] == "fileinto":
            found += _folder_problems(argument)
        elif rule["action"] == "redirect":
            try:
                argument = canonical_address(argument)
            except InvalidAddress:
                found.append(_("Give the address to forward a copy to, for example name@example.com."))
        else:
            argument = ""
        problems += [_("Filter %(number)s: %(problem)s", number=number, problem=p) for p in found]
        kept.append({"field": rule["field"], "match": rule["match"], "value": value, "action": rule["action"],
                     "argument": argument})
    if problems:
        raise MailRulesRefused(problems)
    destinations = tuple(dict.fromkeys(f["argument"] for f in kept if f["action"] == "redirect"))
    if destinations:
        try:
            # The same checks as forwarding with a copy kept: not to oneself, at most so many addresses.
            addressing.check_forwarding(conn, address, Forwarding(destinations, keep_copy=True), max_destinations,
                                        delimiter)
        except AliasRuleError as exc:
            raise MailRulesRefused(exc.problems) from None
    return kept


def mail_rules_of(conn, mailbox_id: int) -> sieve.MailRules:
    """The reply, filters and kept script of a mailbox, as stored."""
    row = queries.vacation_of(conn, mailbox_id)
    vacation = None
    if row is not None:
        vacation = sieve.Vacation(row["enabled"], row["subject"], row["body"], row["first_day"], row["last_day"],
                                  row["interval_days"], tuple(row["addresses"]))
    filters = tuple(sieve.Filter(**f) for f in queries.filters_of(conn, mailbox_id))
    return sieve.MailRules(vacation, filters, queries.kept_script_of(conn, mailbox_id))


def _install(conn, config, mailbox: dict, choice: str | None) -> str | None:
    """Write the mailbox's script from its rows as they are now in this transaction; return the kept script."""
    address = mailbox["email"]
    if not doveadm.is_configured(config):
        raise MailRulesUnavailable("doveadm_url is not set")
    try:
        scripts = doveadm.sieve_scripts(config, address)
        names = {s["name"] for s in scripts}
        rules = mail_rules_of(conn, mailbox["id"])
        kept = rules.include if rules.include in names else None
        other = next((s["name"] for s in scripts if s["active"] and s["name"] != sieve.SCRIPT_NAME), None)
        if other is not None:
            if choice not in (KEEP, REPLACE):
                raise OtherScriptActive(other, doveadm.sieve_script(config, address, other))
            kept = other if choice == KEEP else None
        rules = dataclasses.replace(rules, include=kept)
        portal_active = any(s["active"] and s["name"] == sieve.SCRIPT_NAME for s in scripts)
        if not (rules.vacation and rules.vacation.enabled) and not rules.filters:
            # Nothing of the portal's to run: the kept script (if any) becomes the active one again, as it was.
            if kept is not None and (portal_active or other is None):
                doveadm.activate_sieve_script(config, address, kept)
            elif portal_active:
                doveadm.activate_sieve_script(config, address, None)
        else:
            script = sieve.render(rules)
            try:
                problem = sieve.compile_problem(script)
            except sieve.SieveCompilerMissing:
                problem = None  # Dovecot compiles it again below and refuses what does not compile
            if problem:
                raise MailRulesRefused([_("The Sieve compiler refused the script: %(message)s", message=problem)])
            doveadm.put_sieve_script(config, address, sieve.SCRIPT_NAME, script, activate=True)
    except doveadm.SieveScriptRefused:
        raise MailRulesRefused([_("Dovecot refused the script because it does not compile.")]) from None
    except doveadm.DoveadmUnavailable as exc:
        raise MailRulesUnavailable(str(exc)) from None
    queries.record_installed(conn, mailbox["id"], kept)
    return kept


def _own_mailbox(conn, actor: Actor) -> dict:
    mailbox = mailbox_queries.lock_mailbox(conn, actor.mailbox_id) if actor.mailbox_id else None
    if mailbox is None:
        raise MailRulesRefused([_("The mailbox no longer exists.")])
    return mailbox


def _store_vacation(conn, config, mailbox: dict, vacation: sieve.Vacation, today: date, set_by_role: str,
                    choice: str | None, who: dict) -> None:
    candidates = queries.addresses_delivering_to(conn, mailbox["email"])
    if not vacation.addresses:
        vacation = dataclasses.replace(vacation, addresses=tuple(candidates))
    problems = vacation_problems(vacation, candidates, today)
    if problems:
        raise MailRulesRefused(problems)
    queries.save_vacation(conn, mailbox["id"], enabled=vacation.enabled, subject=vacation.subject,
                          body=vacation.body, first_day=vacation.first_day, last_day=vacation.last_day,
                          interval_days=vacation.interval_days, addresses=list(vacation.addresses),
                          set_by_role=set_by_role)
    kept = _install(conn, config, mailbox, choice)
    audit.record(conn, **who, action="vacation.update", target=mailbox["email"], domain=mailbox["domain"],
                 summary={"enabled": vacation.enabled,
                          "first_day": vacation.first_day.isoformat() if vacation.first_day else None,
                          "last_day": vacation.last_day.isoformat() if vacation.last_day else None,
                          "interval_days": vacation.interval_days, "kept_script": kept})


def save_vacation(conn, actor: Actor, vacation: sieve.Vacation, *, config, today: date,
                  choice: str | None = None) -> None:
    """Store and install the actor's own out-of-office reply (no addresses given: every address of theirs)."""
    with conn.transaction():
        mailbox = _own_mailbox(conn, actor)
        _store_vacation(conn, config, mailbox, vacation, today, "user", choice,
                        {"actor": mailbox["email"], "actor_role": "user", "client_addr": actor.client_addr,
                         "token_id": actor.token.token_id if actor.token else None})


def save_vacation_of(conn, actor: Actor, mailbox: dict, vacation: sieve.Vacation, *, config, today: date) -> None:
    """A domain admin or helpdesk member sets the out-of-office reply of a mailbox in their scope. A script
    another client made active stays, alongside: only its owner may replace it."""
    with conn.transaction():
        row, powers = access.lock_and_ask(conn, actor, mailbox, access.refusal_to_set_vacation, MailRulesRefused)
        who = access.audit_fields(actor, powers, row["domain_id"])
        _store_vacation(conn, config, row, vacation, today, who["actor_role"], KEEP, who)


def save_filters(conn, actor: Actor, wanted: list[dict], *, config, max_destinations: int, delimiter: str,
                 choice: str | None = None) -> list[dict]:
    """Check, store and install the actor's own filters, in this order; return them as stored."""
    with conn.transaction():
        mailbox = _own_mailbox(conn, actor)
        filters = checked_filters(conn, mailbox["email"], wanted, max_destinations, delimiter)
        queries.replace_filters(conn, mailbox["id"], filters)
        kept = _install(conn, config, mailbox, choice)
        audit.record(conn, actor=mailbox["email"], actor_role="user", client_addr=actor.client_addr,
                     action="filters.update", target=mailbox["email"], domain=mailbox["domain"],
                     summary={"count": len(filters), "actions": [f["action"] for f in filters],
                              "kept_script": kept})
    return filters


def other_clients_script(config, address: str) -> dict | None:
    """Another client's active script (``{"name", "text"}``), or None: no such script, or Dovecot unknown."""
    if not doveadm.is_configured(config):
        return None
    try:
        scripts = doveadm.sieve_scripts(config, address)
        other = next((s["name"] for s in scripts if s["active"] and s["name"] != sieve.SCRIPT_NAME), None)
        return {"name": other, "text": doveadm.sieve_script(config, address, other)} if other else None
    except doveadm.DoveadmUnavailable:
        return None
