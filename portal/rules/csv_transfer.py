"""CSV import and export of domains, mailboxes and aliases.

Import checks every row first (against the file and the database) and reports
every problem with its line number; only a file without problems is written,
in one transaction, with COPY, and with one audit row per imported row. Plain
passwords are checked against the password policy and hashed in a process
pool, on every core. Export streams rows from a server-side cursor, in the
columns import reads, so export then import into an empty database gives the
same data (domains, mailboxes and aliases with their settings; not roles, sessions
or the audit log, which belong to the portal installation).

Columns (a header line is required; column order is free):
- domains: name, active, max_mailboxes, max_aliases, default_quota_bytes,
  max_quota_bytes, allow_personal_aliases, max_personal_aliases
  (only name is required; the rest default as for a new domain);
- mailboxes: address, name, active, disabled_reason, quota_bytes, password_must_change, and one of
  password (plain; hashed on import) or password_hash (``{SHA512-CRYPT}$6$...``,
  bare ``$6$...``, ``{BLF-CRYPT}$2y$...`` or ``{ARGON2ID}$argon2id$...``);
- aliases: source, destination, owner (one row per destination; ``@domain`` is
  a catch-all; owner is the mailbox that owns a personal alias, else empty; a
  source may be on an alias domain: it belongs to the alias domain's target);
- alias_domains: name, target, active (target: the domain it mirrors; import
  domains first). Each is linked by the rule of the pages, under its locks.
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from dataclasses import field

import psycopg
from psycopg.types.json import Jsonb

from .. import access
from .. import passwords
from .. import quota
from ..access import Actor
from ..addresses import InvalidAddress
from ..addresses import canonical_address
from ..addresses import canonical_domain
from ..addresses import canonical_mailbox_address
from ..queries import alias_domains as alias_domain_queries
from ..queries import aliases as alias_queries
from ..text import is_one_line
from . import addressing as aliasrules
from . import mailboxes as mailbox_rules

KINDS = ("domains", "mailboxes", "aliases", "alias_domains")

COLUMNS = {
    "domains": ("name", "active", "max_mailboxes", "max_aliases", "default_quota_bytes", "max_quota_bytes",
                "allow_personal_aliases", "max_personal_aliases"),
    "mailboxes": ("address", "name", "active", "disabled_reason", "quota_bytes", "password_must_change", "password",
                  "password_hash"),
    "aliases": ("source", "destination", "owner"),
    "alias_domains": ("name", "target", "active"),
}
REQUIRED = {"domains": {"name"}, "mailboxes": {"address"}, "aliases": {"source", "destination"},
            "alias_domains": {"name", "target"}}
EXPORT_COLUMNS = {
    "domains": COLUMNS["domains"],
    "mailboxes": ("address", "name", "active", "disabled_reason", "quota_bytes", "password_must_change",
                  "password_hash"),
    "aliases": COLUMNS["aliases"],
    "alias_domains": COLUMNS["alias_domains"],
}
MAX_PROBLEMS_SHOWN = 50

_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


class ImportRefused(Exception):
    """The file has problems; nothing was written. ``problems`` holds (line, message) pairs."""

    def __init__(self, problems: list[tuple[int, str]]):
        super().__init__(f"{len(problems)} problems")
        self.problems = problems


@dataclass
class _Checked:
    rows: list[dict] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)

    def problem(self, line: int, message: str) -> None:
        self.problems.append((line, message))


def _bool(value: str, default: bool) -> bool:
    text = (value or "").strip().lower()
    if not text:
        return default
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{value!r} is not yes or no")


def _count(value: str, default: int, maximum: int) -> int:
    text = (value or "").strip()
    if not text:
        return default
    if not text.isdigit() or len(text) > 18 or int(text) > maximum:
        raise ValueError(f"{value!r} is not a whole number from 0 to {maximum}")
    return int(text)


MAX_LIMIT = 10_000_000  # as the domain form
MAX_PERSONAL = 1000


def read_rows(kind: str, stream: io.TextIOBase) -> Iterator[tuple[int, dict]]:
    """Yield (line number, row) from CSV text; ImportRefused for a header this kind cannot read."""
    reader = csv.DictReader(stream)
    try:
        header = reader.fieldnames or []
    except UnicodeDecodeError:
        raise ImportRefused([(1, "this is not UTF-8 text; save the file as UTF-8")]) from None
    except csv.Error as exc:
        raise ImportRefused([(1, f"not CSV: {exc}")]) from None
    unknown = [name for name in header if name not in COLUMNS[kind]]
    missing = sorted(REQUIRED[kind] - set(header))
    if unknown or missing or len(set(header)) != len(header):
        problems = []
        if unknown:
            problems.append((1, f"unknown columns: {', '.join(unknown)}; {kind} has {', '.join(COLUMNS[kind])}"))
        if missing:
            problems.append((1, f"missing columns: {', '.join(missing)}"))
        if len(set(header)) != len(header):
            problems.append((1, "a column is named twice"))
        raise ImportRefused(problems)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except UnicodeDecodeError:
            raise ImportRefused([(reader.line_num + 1, "this is not UTF-8 text; save the file as UTF-8")]) from None
        except csv.Error as exc:
            raise ImportRefused([(reader.line_num, f"not CSV: {exc}")]) from None
        if None in row:
            raise ImportRefused([(reader.line_num, "more fields than columns")])
        yield reader.line_num, {key: (value or "") for key, value in row.items()}


def _check_domains(conn, rows: Iterable[tuple[int, dict]]) -> _Checked:
    checked = _Checked()
    seen: dict[str, int] = {}
    for line, row in rows:
        try:
            name = canonical_domain(row["name"])
        except InvalidAddress as exc:
            checked.problem(line, f"{row['name']!r} {exc}")
            continue
        if name in seen:
            checked.problem(line, f"{name} is also on line {seen[name]}")
            continue
        seen[name] = line
        try:
            values = {
                "name": name,
                "active": _bool(row.get("active", ""), True),
                "max_mailboxes": _count(row.get("max_mailboxes", ""), 0, MAX_LIMIT),
                "max_aliases": _count(row.get("max_aliases", ""), 0, MAX_LIMIT),
                "default_quota_bytes": _count(row.get("default_quota_bytes", ""), 0, quota.MAX_BYTES),
                "max_quota_bytes": _count(row.get("max_quota_bytes", ""), 0, quota.MAX_BYTES),
                "allow_personal_aliases": _bool(row.get("allow_personal_aliases", ""), True),
                "max_personal_aliases": _count(row.get("max_personal_aliases", ""), 5, MAX_PERSONAL),
            }
        except ValueError as exc:
            checked.problem(line, str(exc))
            continue
        if values["max_quota_bytes"] and values["default_quota_bytes"] > values["max_quota_bytes"]:
            checked.problem(line, "default_quota_bytes is above max_quota_bytes")
            continue
        checked.rows.append({**values, "line": line})
    existing = conn.execute("SELECT name FROM virtual_domains WHERE name = ANY(%s)", (list(seen),)).fetchall()
    for row in existing:
        checked.problem(seen[row["name"]], f"{row['name']} exists already")
    return checked


def _check_mailboxes(conn, rows: Iterable[tuple[int, dict]], config, progress) -> _Checked:
    checked = _Checked()
    seen: dict[str, int] = {}
    to_hash = []
    for line, row in rows:
        try:
            address = canonical_mailbox_address(row["address"])
        except InvalidAddress as exc:
            checked.problem(line, f"{row['address']!r} {exc}")
            continue
        if address in seen:
            checked.problem(line, f"{address} is also on line {seen[address]}")
            continue
        seen[address] = line
        plain, stored = row.get("password", ""), row.get("password_hash", "").strip()
        if bool(plain) == bool(stored):
            checked.problem(line, "give either password or password_hash")
            continue
        if stored:
            problem = passwords.stored_hash_problem(stored)
            if problem:
                checked.problem(line, f"password_hash: {problem}")
                continue
        name = row.get("name", "").strip()
        if len(name) > 255 or not is_one_line(name):
            checked.problem(line, "name: at most 255 printable characters")
            continue
        reason = row.get("disabled_reason", "").strip()
        if len(reason) > 500 or not is_one_line(reason):
            checked.problem(line, "disabled_reason: at most 500 printable characters on one line")
            continue
        try:
            values = {
                "email": address, "display_name": name, "active": _bool(row.get("active", ""), True),
                "quota_bytes": _count(row.get("quota_bytes", ""), 0, quota.MAX_BYTES),
                "password_must_change": _bool(row.get("password_must_change", ""), False),
                "password": stored, "line": line, "disabled_reason": reason,
            }
        except ValueError as exc:
            checked.problem(line, str(exc))
            continue
        if plain:
            to_hash.append((len(checked.rows), address, plain))
        checked.rows.append(values)
    _check_mailbox_targets(conn, checked, seen)
    if not checked.problems and to_hash:
        _hash_all(checked, to_hash, config, progress)
    return checked


def _check_mailbox_targets(conn, checked: _Checked, seen: dict[str, int]) -> None:
    """Against the database: domains exist, with room and a size ceiling; addresses are free."""
    domains = {r["name"]: r for r in conn.execute(
        "SELECT id, name, max_mailboxes, mailbox_count, max_quota_bytes FROM virtual_domains WHERE name = ANY(%s)",
        (sorted({a.rpartition("@")[2] for a in seen}),)).fetchall()}
    # The same checks as a mailbox created on the pages (portal/rules/mailboxes.py), for all rows at once.
    for address, problem in mailbox_rules.taken_problems(conn, list(seen)).items():
        checked.problem(seen[address], problem)
    added = Counter()
    for row in checked.rows:
        domain = domains.get(row["email"].rpartition("@")[2])
        if domain is None:
            checked.problem(row["line"], f"there is no domain {row['email'].rpartition('@')[2]}; import it first")
            continue
        row["domain_id"] = domain["id"]
        added[domain["name"]] += 1
        size_problem = quota.limit_problem(row["quota_bytes"], domain)
        if size_problem:
            checked.problem(row["line"], f"quota_bytes: {size_problem}")
        room = mailbox_rules.room_problem(domain, added[domain["name"]])
        if room:
            checked.problem(row["line"], room)


def _hash_all(checked: _Checked, to_hash: list, config, progress) -> None:
    limits = {"min_length": int(config["PASSWORD_MIN_LENGTH"]), "max_length": int(config["PASSWORD_MAX_LENGTH"]),
              "min_score": int(config["PASSWORD_MIN_SCORE"])}
    scheme = config["PASSWORD_SCHEME"]
    items = [(address, plain, scheme, limits) for _, address, plain in to_hash]
    workers = max(1, min(os.cpu_count() or 1, len(items) // 200 or 1))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = pool.map(passwords.hash_for_import, items, chunksize=100)
        for (index, _, _), (stored, problems) in zip(to_hash, results, strict=True):
            row = checked.rows[index]
            if problems:
                checked.problem(row["line"], "password: " + " ".join(problems))
            else:
                row["password"] = stored
            progress(len(items))


def _check_aliases(conn, rows: Iterable[tuple[int, dict]]) -> _Checked:
    checked = _Checked()
    seen: dict[tuple[str, str], int] = {}
    for line, row in rows:
        try:
            raw = row["source"].strip()
            source = "@" + canonical_domain(raw[1:]) if raw.startswith("@") else canonical_address(raw)
            destination = canonical_address(row["destination"])
            owner = canonical_address(row["owner"]) if row.get("owner", "").strip() else None
        except InvalidAddress as exc:
            checked.problem(line, f"an address {exc}")
            continue
        if (source, destination) in seen:
            checked.problem(line, f"{source} -> {destination} is also on line {seen[source, destination]}")
            continue
        seen[source, destination] = line
        checked.rows.append({"source": source, "destination": destination, "owner": owner, "line": line})
    source_domains = sorted({r["source"].rpartition("@")[2] for r in checked.rows})
    domains = {r["name"]: r for r in conn.execute(
        "SELECT id, name, max_aliases FROM virtual_domains WHERE name = ANY(%s)", (source_domains,)).fetchall()}
    # A source on an alias domain belongs to the domain it mirrors.
    domains.update({r["alias_domain"]: r for r in conn.execute(
        "SELECT d.id, d.name, d.max_aliases, a.name AS alias_domain FROM portal_alias_domains a"
        " JOIN virtual_domains d ON d.id = a.target_domain_id WHERE a.name = ANY(%s)", (source_domains,)).fetchall()})
    owners = {r["email"]: r["id"] for r in conn.execute(
        "SELECT id, email FROM virtual_users WHERE email = ANY(%s)",
        (sorted({r["owner"] for r in checked.rows if r["owner"]}),)).fetchall()}
    mailboxes = {r["email"] for r in conn.execute(
        "SELECT email FROM virtual_users WHERE email = ANY(%s)",
        (sorted({r["source"] for r in checked.rows}),)).fetchall()}
    existing = conn.execute(
        "SELECT source, destination FROM virtual_aliases WHERE source = ANY(%s)",
        (sorted({r["source"] for r in checked.rows}),)).fetchall()
    for row in existing:
        if (row["source"], row["destination"]) in seen:
            checked.problem(seen[row["source"], row["destination"]],
                            f"{row['source']} -> {row['destination']} exists already")
    for row in checked.rows:
        domain = domains.get(row["source"].rpartition("@")[2])
        if domain is None:
            checked.problem(row["line"], f"there is no domain {row['source'].rpartition('@')[2]}; import it first")
            continue
        row["domain_id"] = domain["id"]
        if row["owner"] is not None:
            if row["owner"] not in owners:
                checked.problem(row["line"], f"the owner {row['owner']} is not a mailbox")
                continue
            row["owner_id"] = owners[row["owner"]]
        else:
            row["owner_id"] = None
        if row["source"] in mailboxes and row["owner_id"] is not None:
            checked.problem(row["line"], f"{row['source']} is a mailbox; it cannot be a personal alias")
    return checked


def _check_alias_domains(conn, rows: Iterable[tuple[int, dict]]) -> _Checked:
    checked = _Checked()
    seen: dict[str, int] = {}
    for line, row in rows:
        try:
            name, target = canonical_domain(row["name"]), canonical_domain(row["target"])
            active = _bool(row.get("active", ""), True)
        except InvalidAddress as exc:
            checked.problem(line, f"a domain name {exc}")
            continue
        except ValueError as exc:
            checked.problem(line, str(exc))
            continue
        if name in seen:
            checked.problem(line, f"{name} is also on line {seen[name]}")
            continue
        seen[name] = line
        checked.rows.append({"name": name, "target": target, "active": active, "line": line})
    taken = {r["name"] for r in conn.execute(
        "SELECT name FROM virtual_domains WHERE name = ANY(%(names)s)"
        " UNION SELECT name FROM portal_alias_domains WHERE name = ANY(%(names)s)", {"names": list(seen)}).fetchall()}
    targets = {r["name"] for r in conn.execute(
        "SELECT name FROM virtual_domains WHERE name = ANY(%s)",
        (sorted({r["target"] for r in checked.rows}),)).fetchall()}
    for row in checked.rows:
        if row["name"] in taken:
            checked.problem(row["line"], f"{row['name']} is already in use as a domain or an alias domain")
        elif row["target"] not in targets:
            checked.problem(row["line"], f"there is no domain {row['target']}; import it first")
    return checked


def _link_alias_domains(conn, actor: Actor, rows: list[dict], delimiter: str) -> list[tuple[int, str]]:
    """Link each alias domain by the rule of the pages (its checks, locks and audit row); the problems."""
    from . import alias_domains as alias_domain_rules

    problems = []
    for row in rows:
        try:
            alias_domain_rules.create_alias_domain(conn, actor, name=row["name"], target=row["target"],
                                                   active=row["active"], delimiter=delimiter)
        except alias_domain_rules.AliasDomainError as exc:
            problems.append((row["line"], str(exc)))
    return problems


def check(conn, kind: str, stream: io.TextIOBase, config, progress: Callable[[int], None] = lambda total: None) -> list:
    """Read and check a whole file; return the rows to write, or raise ImportRefused with every problem.

    ``progress(total)`` is called once per password hashed, with the number to hash."""
    rows = read_rows(kind, stream)
    if kind == "domains":
        checked = _check_domains(conn, rows)
    elif kind == "mailboxes":
        checked = _check_mailboxes(conn, rows, config, progress)
    elif kind == "alias_domains":
        checked = _check_alias_domains(conn, rows)
    else:
        checked = _check_aliases(conn, rows)
    if checked.problems:
        raise ImportRefused(sorted(checked.problems))
    return checked.rows


def write(conn, kind: str, rows: list[dict], *, actor: Actor, reserved: Iterable[str] = (), delimiter: str = "+",
          dry_run: bool = False) -> int:
    """Write checked rows and their audit rows in one transaction; return how many were written.

    Under the locks the pages take (alias graph, the domain rows), the database
    checks run again, with the rules of the pages for aliases, so nothing that
    changed since ``check`` slips in. ``dry_run`` does all of it and rolls back.
    Raises ImportRefused with every problem; nothing is written then."""
    try:
        with conn.transaction() as transaction:
            alias_queries.lock_alias_graph(conn)
            domain_ids = sorted({r["domain_id"] for r in rows if "domain_id" in r})
            conn.execute("SELECT id FROM virtual_domains WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (domain_ids,))
            if kind == "alias_domains":
                again = _Checked(problems=_link_alias_domains(conn, actor, rows, delimiter))
                if again.problems:
                    raise ImportRefused(sorted(again.problems))
                if dry_run:
                    raise psycopg.Rollback(transaction)
                return len(rows)
            if kind == "domains":
                again = _check_domains(conn, ((r["line"], {**r, **_as_text(r)}) for r in rows))
            elif kind == "mailboxes":
                again = _Checked(rows=[dict(r) for r in rows])
                _check_mailbox_targets(conn, again, {r["email"]: r["line"] for r in rows})
            else:
                again = _Checked(rows=rows)
                _check_alias_rules(conn, again, list(reserved), delimiter)
            if again.problems:
                raise ImportRefused(sorted(again.problems))
            powers = access.powers_of(conn, actor)
            if not powers.superadmin:
                raise ImportRefused([(0, "only the command line or a superadmin imports")])
            _copy(conn, kind, rows, **access.audit_fields(actor, powers))
            if kind == "aliases":
                looping = _loops_through_alias_domains(conn, rows, delimiter)
                if looping:
                    raise ImportRefused(looping)
            if dry_run:
                raise psycopg.Rollback(transaction)
    except psycopg.errors.IntegrityError as exc:
        # Someone else wrote the same rows between the checks and COPY.
        raise ImportRefused([(0, f"the database changed meanwhile ({exc.diag.message_primary}); nothing was"
                                 " written: run the import again")]) from None
    return len(rows)


def _as_text(row: dict) -> dict:
    """A checked domain row back in the text form the checks read."""
    return {k: ("true" if v is True else "false" if v is False else str(v)) for k, v in row.items() if k != "line"}


def _copy(conn, kind: str, rows: list[dict], *, actor: str, actor_role: str, client_addr: str | None,
          token_id: int | None) -> None:
    with conn.cursor() as cur:
        if kind == "domains":
            columns = COLUMNS["domains"]
            with cur.copy(f"COPY virtual_domains ({', '.join(columns)}) FROM STDIN") as copy:  # noqa: S608
                for row in rows:
                    copy.write_row([row[c] for c in columns])
            audits = [("domain.create", r["name"], r["name"]) for r in rows]
        elif kind == "mailboxes":
            columns = ("domain_id", "email", "password", "quota_bytes", "display_name", "active",
                       "disabled_reason", "password_must_change")
            with cur.copy(f"COPY virtual_users ({', '.join(columns)}) FROM STDIN") as copy:  # noqa: S608
                for row in rows:
                    copy.write_row([row[c] for c in columns])
            audits = [("mailbox.create", r["email"], r["email"].rpartition("@")[2]) for r in rows]
        else:
            with cur.copy("COPY virtual_aliases (domain_id, source, destination, owner_id) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([row["domain_id"], row["source"], row["destination"], row["owner_id"]])
            _refuse_loops_and_limits(conn, rows)
            audits = [("alias.create", r["source"], r["source"].rpartition("@")[2]) for r in rows]
        with cur.copy("COPY portal_audit_log (actor, actor_role, client_addr, action, target, domain, summary,"
                      " token_id) FROM STDIN") as copy:
            for action, target, domain in audits:
                copy.write_row([actor, actor_role, client_addr, action, target, domain, Jsonb({"import": kind}),
                                token_id])


def _check_alias_rules(conn, checked: _Checked, reserved: list[str], delimiter: str) -> None:
    """The rules of the pages, per alias address: new aliases and catch-alls as an admin creates them,
    personal aliases as their owner does, and forwarding only for mailboxes that have none yet."""
    groups: dict[str, list[dict]] = {}
    for row in checked.rows:
        groups.setdefault(row["source"], []).append(row)
    domains = {r["id"]: r for r in conn.execute(
        "SELECT id, name, allow_personal_aliases, max_personal_aliases FROM virtual_domains WHERE id = ANY(%s)",
        (sorted({r["domain_id"] for r in checked.rows}),)).fetchall()}
    owners = {r["id"]: r for r in conn.execute(
        "SELECT id, email, domain_id FROM virtual_users WHERE id = ANY(%s)",
        (sorted({r["owner_id"] for r in checked.rows if r["owner_id"]}),)).fetchall()}
    personal_added: Counter = Counter()
    for source, group in groups.items():
        line, domain = group[0]["line"], domains[group[0]["domain_id"]]
        destinations = [r["destination"] for r in group]
        owner_ids = {r["owner_id"] for r in group}
        try:
            if len(owner_ids) > 1:
                raise aliasrules.AliasRuleError([f"{source}: all its rows must name the same owner"])
            owner_id = owner_ids.pop()
            if owner_id is not None:
                owner = owners[owner_id]
                if owner["domain_id"] != domain["id"] or destinations != [owner["email"]]:
                    raise aliasrules.AliasRuleError(
                        [f"{source}: a personal alias is in its owner's domain and delivers to its owner only"])
                if not domain["allow_personal_aliases"]:
                    raise aliasrules.AliasRuleError([f"{domain['name']} does not allow personal addresses"])
                personal_added[owner_id] += 1
                existing = alias_queries.count_personal_aliases(conn, owner_id)
                if existing + personal_added[owner_id] > domain["max_personal_aliases"]:
                    raise aliasrules.AliasRuleError(
                        [f"{owner['email']} would have more than {domain['max_personal_aliases']} personal addresses"])
                aliasrules.check_new_alias_source(conn, source, domain["name"], reserved, delimiter)
                aliasrules.check_not_shadowed(conn, source)
                aliasrules.check_new_alias_target(conn, source, owner["email"], delimiter)
            elif conn.execute("SELECT 1 FROM virtual_users WHERE email = %s", (source,)).fetchone():
                if alias_queries.destinations(conn, source):
                    raise aliasrules.AliasRuleError([f"{source} has its forwarding set already; its owner changes it"])
                others = [d for d in destinations if d != source]
                if others:
                    aliasrules.check_alias_destinations(conn, source, others, delimiter)
            elif source.startswith("@"):
                if alias_queries.source_exists(conn, source):
                    raise aliasrules.AliasRuleError([f"{domain['name']} already has a catch-all"])
                aliasrules.check_alias_destinations(conn, source, destinations, delimiter)
            else:
                aliasrules.check_new_alias_source(conn, source, domain["name"], [], delimiter,
                                                  tuple(alias_domain_queries.names_for(conn, domain["name"])))
                aliasrules.check_alias_destinations(conn, source, destinations, delimiter)
        except aliasrules.AliasRuleError as exc:
            for problem in exc.problems:
                checked.problem(line, str(problem))


def _loops_through_alias_domains(conn, rows: list[dict], delimiter: str) -> list[tuple[int, str]]:
    """Circles the file closes through alias domains, walked as Postfix expands them, with every row in place.

    The checks before COPY see one address at a time, and the file-wide walk follows rows only; a circle
    that leaves through x@alias must have a row delivering to an alias domain, so those sources are walked."""
    names = {r["name"] for r in conn.execute("SELECT name FROM portal_alias_domains").fetchall()}
    first_line: dict[str, int] = {}
    for row in rows:
        if row["destination"].rpartition("@")[2] in names:
            first_line.setdefault(row["source"], row["line"])
    problems = []
    for source, line in first_line.items():
        circle = aliasrules.first_circle(conn, [source], delimiter)
        if circle:
            problems.append((line, f"mail would go round in a circle: {' -> '.join([source, *circle[1]])}"))
    return problems


def _refuse_loops_and_limits(conn, rows: list[dict]) -> None:
    """After the aliases are in (inside the transaction): refuse loops through them and domains over their limit."""
    lines = {}
    for row in rows:
        lines.setdefault(row["source"], row["line"])
    looping = conn.execute(
        """
        WITH RECURSIVE walk (start, node) AS (
            SELECT source, destination FROM virtual_aliases WHERE source = ANY(%(s)s) AND source <> destination
            UNION
            SELECT w.start, a.destination FROM walk w JOIN virtual_aliases a ON a.source = w.node
             WHERE a.source <> a.destination
        )
        SELECT DISTINCT start FROM walk WHERE node = start
        """,
        {"s": list(lines)},
    ).fetchall()
    problems = [(lines[r["start"]], f"{r['start']} would forward back to itself") for r in looping]
    over = conn.execute(
        """
        SELECT d.name, d.max_aliases FROM virtual_domains d
         WHERE d.max_aliases > 0 AND d.id = ANY(%s)
           AND (SELECT count(DISTINCT a.source) FROM virtual_aliases a WHERE a.domain_id = d.id) > d.max_aliases
        """,
        (sorted({r["domain_id"] for r in rows}),),
    ).fetchall()
    problems += [(0, f"{r['name']} would go over its limit of {r['max_aliases']} aliases") for r in over]
    if problems:
        raise ImportRefused(sorted(problems))


def export_rows(conn, kind: str) -> Iterator[list]:
    """Yield the header, then every row of ``kind`` in import's columns, from a server-side cursor."""
    yield list(EXPORT_COLUMNS[kind])
    queries = {
        "domains": "SELECT name, active, max_mailboxes, max_aliases, default_quota_bytes, max_quota_bytes,"
                   " allow_personal_aliases, max_personal_aliases FROM virtual_domains ORDER BY name",
        "mailboxes": "SELECT email, display_name, active, disabled_reason, quota_bytes, password_must_change,"
                     " password FROM virtual_users ORDER BY email",
        "aliases": "SELECT a.source, a.destination, coalesce(o.email, '') FROM virtual_aliases a"
                   " LEFT JOIN virtual_users o ON o.id = a.owner_id ORDER BY a.source, a.destination",
        "alias_domains": "SELECT a.name, d.name, a.active FROM portal_alias_domains a"
                         " JOIN virtual_domains d ON d.id = a.target_domain_id ORDER BY a.name",
    }
    with conn.transaction(), conn.cursor(name=f"export_{kind}", row_factory=_tuple_row) as cur:
        cur.itersize = 2000
        cur.execute(queries[kind])
        for row in cur:
            yield ["true" if v is True else "false" if v is False else v for v in row]


def _tuple_row(cursor):
    return lambda values: values
