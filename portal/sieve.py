"""Sieve, the language Dovecot's Pigeonhole runs at delivery: the one script the portal writes per mailbox.

The script is rendered from the database's rows (out-of-office reply, filters,
another client's script kept alongside) and is never edited in place: each save
writes it whole. Nothing a user types can change its meaning:

- user text only ever appears inside a quoted string (RFC 5228 2.4.2), where
  only the backslash and the double quote are special, and both are escaped;
- no extension that reads inside strings is required (``variables``,
  ``encoded-character``), so ``${...}`` stays literal text;
- single-line fields refuse line breaks and control characters before they get
  here (:func:`text_problem`), and a script that does not compile is refused
  with the compiler's message (:func:`compile_problem`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from dataclasses import field
from datetime import date
from pathlib import Path

from . import mailconfig

# The portal's own script among the mailbox's scripts (ManageSieve clients show it under this name).
SCRIPT_NAME = "mail-portal"

# What a filter can look at, and how: "contains" reads the header as written (display names too),
# "is" compares the address itself where the header holds addresses.
FILTER_FIELDS = ("from", "to", "subject", "list-id")
FILTER_MATCHES = ("contains", "is")
FILTER_ACTIONS = ("fileinto", "redirect", "discard", "seen")
_HEADERS = {"from": ("from",), "to": ("to", "cc"), "subject": ("subject",), "list-id": ("list-id",)}
_ADDRESS_FIELDS = ("from", "to")

COMPILE_SECONDS = 10


@dataclass(frozen=True)
class Vacation:
    """An out-of-office reply as stored: on or off, its text, its days, and the addresses it answers for."""

    enabled: bool
    subject: str
    body: str
    first_day: date | None
    last_day: date | None
    interval_days: int
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class Filter:
    """One filter: when ``field`` ``match``es ``value``, do ``action`` (with ``argument``: a folder or address)."""

    field: str
    match: str
    value: str
    action: str
    argument: str = ""


@dataclass(frozen=True)
class MailRules:
    """Everything the portal's script holds for one mailbox."""

    vacation: Vacation | None = None
    filters: tuple[Filter, ...] = field(default_factory=tuple)
    include: str | None = None  # another client's script, kept alongside (run after the portal's rules)

    @property
    def is_empty(self) -> bool:
        """Nothing to do at delivery: no reply switched on, no filter, nothing kept alongside."""
        return not (self.vacation and self.vacation.enabled) and not self.filters and not self.include


def quote(text: str) -> str:
    """``text`` as a Sieve quoted string: backslash and double quote escaped, nothing else special."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _string_list(items) -> str:
    return "[" + ", ".join(quote(item) for item in items) + "]"


def text_problem(text: str, *, multiline: bool = False) -> str | None:
    """Why ``text`` cannot go into a script as typed (None: it can). In English, for the rule to translate."""
    if "\ufffd" in text:
        return "not-utf8"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "not-utf8"
    allowed = {"\n", "\t"} if multiline else set()
    if any((ord(ch) < 32 or ord(ch) == 127) and ch not in allowed for ch in text):
        return "control"
    return None


def _test(rule: Filter) -> str:
    headers = _HEADERS[rule.field]
    if rule.match == "is" and rule.field in _ADDRESS_FIELDS:
        return f"address :is {_string_list(headers)} {quote(rule.value)}"
    if rule.match == "is" and rule.field == "list-id":
        # "List Name <dev.lists.example>": the list is the id between the angle brackets.
        return f"header :contains {_string_list(headers)} {quote('<' + rule.value.strip('<>') + '>')}"
    return f"header :{rule.match} {_string_list(headers)} {quote(rule.value)}"


def _action(rule: Filter) -> tuple[str, set[str]]:
    if rule.action == "fileinto":
        return f"fileinto :create {quote(rule.argument)};\n  stop;", {"fileinto", "mailbox"}
    if rule.action == "redirect":
        return f"redirect :copy {quote(rule.argument)};", {"copy"}
    if rule.action == "discard":
        return "discard;\n  stop;", set()
    return 'addflag "\\\\Seen";', {"imap4flags"}


# The order filters run in, by what they do (in the user's order within each kind): a flag counts only for
# what is stored after it; a deleted message gets no reply; copies go out whoever else files the message;
# the first filter that moves a message moves it (no duplicate copies in several folders).
_ORDER = {"seen": 0, "discard": 1, "redirect": 3, "fileinto": 4}
_REPLY_STEP = 2


def _reply(vacation: Vacation, needs: set[str]) -> list[str]:
    needs.add("vacation")
    arguments = [f":days {int(vacation.interval_days)}", f":subject {quote(vacation.subject)}"]
    if vacation.addresses:
        arguments.append(f":addresses {_string_list(vacation.addresses)}")
    reply = f"vacation {' '.join(arguments)} {quote(vacation.body)};"
    # No reply to what a spam filter flagged (X-Spam-Flag: SpamAssassin, rspamd): it would confirm the address.
    tests = ['not header :contains "x-spam-flag" "yes"']
    if vacation.first_day:
        tests.append(f'currentdate :value "ge" "date" {quote(vacation.first_day.isoformat())}')
    if vacation.last_day:
        # The reply stops by itself after the last day: the date is checked at each delivery.
        tests.append(f'currentdate :value "le" "date" {quote(vacation.last_day.isoformat())}')
    if len(tests) > 1:
        needs.update({"date", "relational"})
    return ["# Out of office", f"if allof({', '.join(tests)}) {{\n  {reply}\n}}"]


def render(rules: MailRules) -> str:
    """The whole script for ``rules``: filters and the reply in the order of ``_ORDER``, then the kept script."""
    needs: set[str] = set()
    steps: list[tuple[int, list[str]]] = []
    for number, rule in enumerate(rules.filters, start=1):
        action, extensions = _action(rule)
        needs.update(extensions)
        steps.append((_ORDER[rule.action], [f"# Filter {number}", f"if {_test(rule)} {{\n  {action}\n}}"]))
    if rules.vacation is not None and rules.vacation.enabled:
        steps.append((_REPLY_STEP, _reply(rules.vacation, needs)))
    body = [line for _order, lines in sorted(steps, key=lambda step: step[0]) for line in lines]
    if rules.include:
        needs.add("include")
        body.append("# The script another client wrote, kept alongside")
        body.append(f"include :personal :optional {quote(rules.include)};")
    head = ["# Written by the mail portal from its database; a save there replaces this script."]
    if needs:
        head.append(f"require {_string_list(sorted(needs))};")
    return "\n".join(head + body) + "\n"


class SieveCompilerMissing(Exception):
    """sievec (Debian: dovecot-sieve) is not installed where the portal runs."""


def write_private_config(directory: Path) -> Path:
    """A minimal Dovecot configuration in ``directory`` for Pigeonhole's tools (sievec, sieve-test), so they need
    no access to Dovecot's own files; its path."""
    # An empty personal location of its own, so that "include :personal :optional" compiles here as it
    # does at delivery when the other script is gone.
    (directory / "scripts").mkdir(exist_ok=True)
    if mailconfig.dovecot_series() == "2.4":
        settings = ("dovecot_config_version = 2.4.1\ndovecot_storage_version = 2.4.1\n"
                    f"base_dir = {directory}/run\n"
                    f"sieve_script personal {{\n  driver = file\n  path = {directory}/scripts\n"
                    f"  active_path = {directory}/active\n}}\n")
    else:
        settings = (f"base_dir = {directory}/run\n"
                    f"plugin {{\n  sieve = file:{directory}/scripts;active={directory}/active\n}}\n")
    path = directory / "dovecot.conf"
    path.write_text(settings)
    return path


def compile_command() -> str | None:
    """Where Pigeonhole's compiler is (None: not installed here)."""
    return shutil.which("sievec") or ("/usr/bin/sievec" if Path("/usr/bin/sievec").exists() else None)


def compile_problem(script: str) -> str | None:
    """The Sieve compiler's complaint about ``script`` (None: it compiles). Runs Pigeonhole's ``sievec``
    on a private minimal configuration, so it needs no access to Dovecot's own files."""
    sievec = compile_command()
    if sievec is None:
        raise SieveCompilerMissing("sievec is not installed (Debian: apt-get install dovecot-sieve)")
    with tempfile.TemporaryDirectory(prefix="portal-sieve-") as scratch:
        directory = Path(scratch)
        settings = write_private_config(directory)
        source = directory / f"{SCRIPT_NAME}.sieve"
        source.write_text(script, encoding="utf-8")
        result = subprocess.run(  # noqa: S603 - a fixed program on files of our own
            [sievec, "-c", str(settings), str(source), str(directory / "out.svbin")],
            capture_output=True, text=True, timeout=COMPILE_SECONDS, check=False,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    if result.returncode == 0:
        return None
    lines = [line.strip() for line in result.stdout.splitlines() + result.stderr.splitlines()]
    # "mail-portal: line 3: error: unknown command 'x'." lines; the closing Fatal line repeats the path.
    messages = []
    for line in lines:
        if line.startswith(SCRIPT_NAME + ":"):
            line = line.partition(": ")[2]
        line = line.replace("error: ", "", 1).rstrip(".")
        if line and "Fatal:" not in line and line != "validation failed":
            messages.append(line)
    return "; ".join(messages) or f"sievec failed ({result.returncode})"
