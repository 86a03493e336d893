"""A mailbox's out-of-office reply and filters: checked, stored in PostgreSQL, and written to Dovecot as one
Sieve script, all in one transaction (if Dovecot refuses the script or cannot be reached, nothing is kept).

The user changes both on the account pages; a domain admin or helpdesk member may switch the reply on for
someone in their scope (someone on sick leave), which the audit log records and the user's page shows.
A script another client made active (Roundcube, Thunderbird over ManageSieve) is never replaced silently:
the user chooses to keep it alongside the portal's rules, or to replace it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from datetime import UTC
from datetime import date
from datetime import datetime

from .. import access
from .. import doveadm
from .. import notices
from .. import sieve
from ..access import Actor
from ..addresses import InvalidAddress
from ..addresses import canonical_address
from ..i18n import _
from ..queries import aliases as alias_queries
from ..queries import audit
from ..queries import mail_rules as queries
from ..queries import mailboxes as mailbox_queries
from . import addressing
from .addressing import AliasRuleError
from .addressing import Forwarding

MOST_FILTERS = 20
# Pigeonhole's sieve_max_redirects default: more copies of one message would fail its whole script at delivery.
MOST_FORWARDS = 4
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


class ScriptsConflict(OtherScriptActive):
    """The other client's script, kept alongside, cannot run next to the portal's rules (``problem`` says why):
    the user may replace it, or change it in that program."""

    def __init__(self, name: str, text: str, problem: str):
        super().__init__(name, text)
        self.problem = problem


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
    elif folder != folder.strip() or any(ch in folder for ch in "*%"):
        problems.append(_("A folder name may not start or end with a space, or hold %(characters)s.",
                           characters="* %"))
    elif "/" in folder or any(not part.strip() for part in folder.split(".")):
        # Maildir++ separates levels with a dot: "Work/Projects" or "a..b" would fail at delivery.
        problems.append(_("Separate folder levels with one dot, for example Work.Projects."))
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
            addressing.check_forwarding(conn, address, Forwarding(destinations, keep_copy=True),
                                        min(max_destinations, MOST_FORWARDS), delimiter)
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


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What to write to Dovecot for one mailbox, decided from the rows and Dovecot's scripts as they are."""

    kept: str | None  # another client's script run after the portal's rules
    script: str | None  # the portal's script to store and make active (None: none of the portal's to run)
    activate: str | None  # otherwise: the script to make active (None: none)
    deactivate: bool  # otherwise: whether the portal's script must stop being the active one
    preserve: tuple[str, str] | None  # another client's edit of the portal's script, kept under a name of its own

    @property
    def script_sha256(self) -> bytes | None:
        """The hash the portal keeps of its script, to recognise an edit by another client later."""
        return hashlib.sha256(self.script.encode()).digest() if self.script is not None else None


_RUNS_ONCE = re.compile(r"\b(vacation|reject|ereject)\b")


def _conflicts(rules: sieve.MailRules, kept_text: str) -> bool:
    """Whether the kept script would make Sieve fail at delivery next to the portal's rules: it has its own
    out-of-office reply (or a reject) while the portal's is on. Pigeonhole allows one per message."""
    reply_on = rules.vacation is not None and rules.vacation.enabled
    return reply_on and _RUNS_ONCE.search(re.sub(r"(?m)#.*$", "", kept_text)) is not None


def _plan(conn, config, mailbox: dict, choice: str | None, now: datetime) -> _Plan:
    """Decide what to write, from the rows as they are now in this transaction (reads Dovecot, writes nothing)."""
    address = mailbox["email"]
    scripts = doveadm.sieve_scripts(config, address)
    names = {s["name"] for s in scripts}
    state = queries.sieve_state_of(conn, mailbox["id"])
    rules = mail_rules_of(conn, mailbox["id"])
    portal_runs = bool((rules.vacation and rules.vacation.enabled) or rules.filters)
    kept = rules.include if rules.include in names else None
    other = next((s["name"] for s in scripts if s["active"] and s["name"] != sieve.SCRIPT_NAME), None)
    preserve = None
    if sieve.SCRIPT_NAME in names and state["script_sha256"] is not None:
        current = doveadm.sieve_script(config, address, sieve.SCRIPT_NAME)
        digest = hashlib.sha256(current.encode()).digest()
        if digest != state["script_sha256"]:
            # Another client (Roundcube edits the active script) changed the portal's script: never lost.
            other = f"{sieve.SCRIPT_NAME}-edited-{now:%Y%m%d%H%M%S}-{digest.hex()[:6]}"
            preserve = (other, current)
    if other is not None and (portal_runs or preserve):
        if choice not in (KEEP, REPLACE):
            text = preserve[1] if preserve else doveadm.sieve_script(config, address, other)
            raise OtherScriptActive(other, text)
        kept = other if choice == KEEP else None
    elif other is not None:
        kept = other  # nothing of the portal's runs: the other script stays as it is, active
    elif choice == REPLACE:
        kept = None  # the script kept before: no longer run
    if kept is not None and portal_runs:
        kept_text = preserve[1] if preserve and kept == preserve[0] else doveadm.sieve_script(config, address, kept)
        if _conflicts(rules, kept_text):
            raise ScriptsConflict(kept, kept_text, _(
                "The filters “%(name)s” from another program send their own out-of-office reply (or refuse mail),"
                " and only one can run per message. Switch that reply off there, or replace those filters with"
                " your settings here.", name=kept))
    rules = dataclasses.replace(rules, include=kept)
    portal_active = any(s["active"] and s["name"] == sieve.SCRIPT_NAME for s in scripts)
    if portal_runs:
        script = sieve.render(rules)
        try:
            problem = sieve.compile_problem(script)
        except sieve.SieveCompilerMissing:
            problem = None  # Dovecot compiles it again when it is stored and refuses what does not compile
        if problem:
            raise MailRulesRefused([_("The Sieve compiler refused the script: %(message)s", message=problem)])
        return _Plan(kept, script, None, False, preserve)
    # Nothing of the portal's to run: a kept script becomes the active one again, as it was before.
    activate = kept if kept is not None and (portal_active or other is None) else None
    return _Plan(kept, None, activate, portal_active and activate is None, preserve)


def _apply(config, address: str, plan: _Plan) -> None:
    """Write the plan to Dovecot (the last step of the transaction: every row is written before)."""
    if plan.preserve is not None:
        doveadm.put_sieve_script(config, address, plan.preserve[0], plan.preserve[1], activate=False)
    if plan.script is not None:
        doveadm.put_sieve_script(config, address, sieve.SCRIPT_NAME, plan.script, activate=True)
    elif plan.activate is not None:
        doveadm.activate_sieve_script(config, address, plan.activate)
    elif plan.deactivate:
        doveadm.activate_sieve_script(config, address, None)


def _install(conn, config, mailbox: dict, choice: str | None, audit_row: dict) -> str | None:
    """Write the mailbox's script from its rows as they are now in this transaction, with the audit row
    (``audit_row``: audit.record's arguments, the kept script added); return the kept script. Every row is
    written before Dovecot is, so a failure of the database leaves Dovecot as it was."""
    address = mailbox["email"]
    if not doveadm.is_configured(config):
        raise MailRulesUnavailable("doveadm_url is not set")
    try:
        plan = _plan(conn, config, mailbox, choice, datetime.now(UTC))
        queries.record_installed(conn, mailbox["id"], plan.kept, plan.script_sha256)
        audit.record(conn, **{**audit_row, "summary": {**audit_row["summary"], "kept_script": plan.kept}})
        _apply(config, address, plan)
    except doveadm.SieveScriptRefused:
        raise MailRulesRefused([_("Dovecot refused the script because it does not compile.")]) from None
    except doveadm.SieveUserUnknown:
        raise MailRulesRefused([_("Dovecot does not know this mailbox now (it may be disabled): enable it"
                                  " first.")]) from None
    except doveadm.DoveadmUnavailable as exc:
        raise MailRulesUnavailable(str(exc)) from None
    return plan.kept


def _own_mailbox(conn, actor: Actor) -> dict:
    mailbox = mailbox_queries.lock_mailbox(conn, actor.mailbox_id) if actor.mailbox_id else None
    if mailbox is None:
        raise MailRulesRefused([_("The mailbox no longer exists.")])
    return mailbox


def reply_addresses(conn, email: str) -> list[dict]:
    """The addresses an out-of-office reply may answer for (``{"address", "own"}``): the mailbox's own, its
    personal addresses and the aliases that deliver to it, each also in its alias-domain forms. ``own`` is
    False for an alias that delivers to others too (a group: all its members would answer)."""
    found: dict[str, bool] = {}
    for row in queries.addresses_delivering_to(conn, email):
        for form in sorted(alias_queries.same_address_forms(conn, row["address"])):
            found.setdefault(form, row["own"])
    return [{"address": address, "own": own} for address, own in found.items()]


def _store_vacation(conn, config, mailbox: dict, vacation: sieve.Vacation, today: date, set_by_role: str,
                    choice: str | None, who: dict) -> None:
    candidates = reply_addresses(conn, mailbox["email"])
    if not vacation.addresses:
        vacation = dataclasses.replace(vacation, addresses=tuple(c["address"] for c in candidates if c["own"]))
    problems = vacation_problems(vacation, [c["address"] for c in candidates], today)
    if problems:
        raise MailRulesRefused(problems)
    queries.save_vacation(conn, mailbox["id"], enabled=vacation.enabled, subject=vacation.subject,
                          body=vacation.body, first_day=vacation.first_day, last_day=vacation.last_day,
                          interval_days=vacation.interval_days, addresses=list(vacation.addresses),
                          set_by_role=set_by_role)
    # The words are in the audit row: they go out in the user's name, whoever set them.
    _install(conn, config, mailbox, choice, {
        **who, "action": "vacation.update", "target": mailbox["email"], "domain": mailbox["domain"],
        "summary": {"enabled": vacation.enabled, "subject": vacation.subject,
                    "body_sha256": hashlib.sha256(vacation.body.encode()).hexdigest(),
                    "first_day": vacation.first_day.isoformat() if vacation.first_day else None,
                    "last_day": vacation.last_day.isoformat() if vacation.last_day else None,
                    "interval_days": vacation.interval_days, "addresses": list(vacation.addresses)}})


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
        try:
            _store_vacation(conn, config, row, vacation, today, who["actor_role"], KEEP, who)
        except ScriptsConflict as exc:
            raise MailRulesRefused([exc.problem]) from None


def save_filters(conn, actor: Actor, wanted: list[dict], *, config, max_destinations: int, delimiter: str,
                 choice: str | None = None) -> list[dict]:
    """Check, store and install the actor's own filters, in this order; return them as stored."""
    with conn.transaction():
        mailbox = _own_mailbox(conn, actor)
        filters = checked_filters(conn, mailbox["email"], wanted, max_destinations, delimiter)
        forwarded_before = {f["argument"] for f in queries.filters_of(conn, mailbox["id"]) if f["action"] == "redirect"}
        queries.replace_filters(conn, mailbox["id"], filters)
        forwards = list(dict.fromkeys(f["argument"] for f in filters if f["action"] == "redirect"))
        if set(forwards) - forwarded_before:
            notices.queue(conn, mailbox, "forwarding_changed", notices.forwarding_changed, mailbox["email"], forwards,
                          True, notices.Change("user", actor.client_addr), by_filter=True)
        _install(conn, config, mailbox, choice, {
            "actor": mailbox["email"], "actor_role": "user", "client_addr": actor.client_addr,
            "token_id": actor.token.token_id if actor.token else None, "action": "filters.update",
            "target": mailbox["email"], "domain": mailbox["domain"],
            # Where copies go, as the forwarding page's changes say it: the first thing to look at after a
            # stolen password.
            "summary": {"count": len(filters), "actions": [f["action"] for f in filters],
                        "forwards_to": [f["argument"] for f in filters if f["action"] == "redirect"]}})
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
