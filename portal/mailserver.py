"""Installing the portal's Postfix and Dovecot files on a running mail server, all or nothing.

``flask --app app mailserver apply`` (portal/cli/mailserver.py) plans the
change as a list of :class:`FileChange` (the rendered files, and ``main.cf``
with only the lines the portal owns edited), then :func:`apply` backs up, grants,
installs, checks, reloads and probes; any failure puts every file back as it was
and reloads again. Nothing here prints a password.
"""

from __future__ import annotations

import difflib
import grp
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# main.cf parameters whose lines the portal owns: the guide's three pgsql maps.
OWNED_MAIN_CF = ("virtual_mailbox_domains", "virtual_mailbox_maps", "virtual_alias_maps")


class MailServerError(Exception):
    """A step failed; the message says which and why (never with a password)."""


@dataclass
class FileChange:
    """One file as it is (``old``, None: absent) and as the portal wants it."""

    path: Path
    old: bytes | None
    new: bytes
    mode: int
    group: str = "root"

    @property
    def changed(self) -> bool:
        """Whether installing it changes anything (content, mode or group)."""
        if self.old != self.new:
            return True
        info = self.path.stat()
        return (info.st_mode & 0o7777) != self.mode or info.st_gid != _gid(self.group)


def _gid(group: str) -> int:
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise MailServerError(f"there is no group {group!r} on this host") from None


def read(path: Path) -> bytes | None:
    """A file's bytes, or None when it does not exist."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _logical_lines(text: str) -> list[list[str]]:
    """main.cf as logical lines: a parameter with its continuation lines (they start with white space)."""
    lines: list[list[str]] = []
    for line in text.splitlines(keepends=True):
        if lines and line[:1] in (" ", "\t") and line.strip() and not lines[-1][0].lstrip().startswith("#"):
            lines[-1].append(line)
        else:
            lines.append([line])
    return lines


def _name_of(logical: list[str]) -> str | None:
    match = re.match(r"^([A-Za-z0-9_]+)\s*=", logical[0])
    return match.group(1) if match else None


def main_cf_value(text: str, name: str) -> str | None:
    """A parameter's value as main.cf sets it (continuations joined), or None when it is not set."""
    found = None
    for logical in _logical_lines(text):
        if _name_of(logical) == name:
            found = " ".join(part.strip() for part in "".join(logical).split("\n")).partition("=")[2].strip()
    return found


def edit_main_cf(text: str, owned: dict[str, str], recipient_check: str) -> str:
    """``main.cf`` with the portal's lines set and every other line untouched.

    ``owned`` parameters are replaced where they are (or appended); the
    ``check_recipient_access`` lookup is appended to ``smtpd_recipient_restrictions``,
    or becomes its only entry where main.cf has none: relaying stays with
    ``smtpd_relay_restrictions``, so nothing else of the restrictions changes."""
    logical = _logical_lines(text)
    seen = set()
    out = []
    for entry in logical:
        name = _name_of(entry)
        value = main_cf_value("".join(entry), name) if name else None
        if name in owned:
            seen.add(name)
            out.append(entry if value == owned[name] else [f"{name} = {owned[name]}\n"])
        elif name == "smtpd_recipient_restrictions":
            seen.add(name)
            if value and recipient_check in value:
                out.append(entry)
            else:
                out.append([f"{name} = {value}, {recipient_check}\n" if value else f"{name} = {recipient_check}\n"])
        else:
            out.append(entry)
    result = "".join("".join(entry) for entry in out)
    if result and not result.endswith("\n"):
        result += "\n"
    missing = [n for n in OWNED_MAIN_CF if n in owned and n not in seen]
    if "smtpd_recipient_restrictions" not in seen:
        missing.append("smtpd_recipient_restrictions")
    if missing:
        result += "# Mail portal (flask --app app mailserver apply): the lines it owns.\n"
        for name in missing:
            value = owned.get(name, recipient_check)
            result += f"{name} = {value}\n"
    return result


def masked_diff(changes: list[FileChange], secrets: list[str]) -> str:
    """A unified diff of every change, each secret replaced by ********."""

    def lines(data: bytes | None) -> list[str]:
        text = (data or b"").decode("utf-8", "replace")
        for secret in secrets:
            if secret:
                text = text.replace(secret, "********")
        return text.splitlines(keepends=True)

    out = []
    for change in changes:
        if change.old == change.new:
            continue
        out += difflib.unified_diff(lines(change.old), lines(change.new),
                                    fromfile=f"{change.path} (now)" if change.old is not None else "/dev/null",
                                    tofile=f"{change.path} (after apply)")
    return "".join(out)


def run_checked(command: list[str], what: str, warnings_fail: bool = True) -> str:
    """Run a check or reload; fail on a non-zero exit, and on any warning when ``warnings_fail``."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MailServerError(f"{what}: {type(exc).__name__}: {exc}") from None
    # chroots without /etc/mtab make doveconf say so on every run; it is not about the configuration.
    noise = [line for line in result.stderr.splitlines() if line.strip() and "setmntent(" not in line]
    if result.returncode != 0 or (warnings_fail and (noise or "warning:" in result.stdout)):
        detail = "\n".join(noise or result.stdout.splitlines())[:1000]
        raise MailServerError(f"{what} failed ({result.returncode}): {detail}")
    return result.stdout


@dataclass
class Plan:
    """Everything apply will do, decided before anything is touched."""

    changes: list[FileChange]
    grants: Callable[[], None]
    checks: list[tuple[list[str], str]]
    reloads: list[tuple[list[str], str]]
    probes: list[tuple[list[str], str, str]]  # command, what it proves, the answer it must contain


def _install(change: FileChange, backup_dir: Path) -> None:
    if change.old is not None:
        target = backup_dir / change.path.relative_to(change.path.anchor)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.copy2(change.path, target)
    change.path.parent.mkdir(parents=True, exist_ok=True)
    temporary = change.path.with_name(f".{change.path.name}.mail-portal-new")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(change.new)
    os.chown(temporary, 0, _gid(change.group))
    os.chmod(temporary, change.mode)
    os.replace(temporary, change.path)


def _restore(change: FileChange, original_mode: int | None, original_gid: int | None) -> None:
    if change.old is None:
        change.path.unlink(missing_ok=True)
        return
    temporary = change.path.with_name(f".{change.path.name}.mail-portal-old")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(change.old)
    os.chown(temporary, 0, original_gid if original_gid is not None else 0)
    os.chmod(temporary, original_mode if original_mode is not None else 0o600)
    os.replace(temporary, change.path)


def apply(plan: Plan, backup_dir: Path, report: Callable[[str], None]) -> list[FileChange]:
    """Grant, install, check, reload and probe; on any failure restore every file, reload, and raise.

    Returns the files that changed (none: nothing was touched, not even a reload)."""
    changed = [c for c in plan.changes if c.changed]
    if not changed:
        report("nothing to change: the installed files are the portal's already")
        return []
    originals = {c.path: ((c.path.stat().st_mode & 0o7777, c.path.stat().st_gid) if c.old is not None
                          else (None, None)) for c in changed}
    backup_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    plan.grants()
    report("granted the mail role what the new queries read")
    installed: list[FileChange] = []
    try:
        for change in changed:
            try:
                _install(change, backup_dir)
            except OSError as exc:
                raise MailServerError(f"installing {change.path}: {exc.strerror or exc}") from None
            installed.append(change)
            report(f"installed {change.path} ({change.mode:o}, group {change.group})")
        for command, what in plan.checks:
            run_checked(command, what)
            report(f"{what}: no errors, no warnings")
        for command, what in plan.reloads:
            run_checked(command, what, warnings_fail=False)
            report(what)
        for command, what, expected in plan.probes:
            answer = run_checked(command, what, warnings_fail=False)
            if expected not in answer:
                raise MailServerError(f"{what}: expected {expected!r}, got {answer.strip()[:200]!r}")
            report(f"{what}: ok")
    except MailServerError as exc:
        report(f"FAILED: {exc}")
        for change in reversed(installed):
            _restore(change, *originals[change.path])
            report(f"restored {change.path}")
        for command, what in plan.reloads:
            try:
                run_checked(command, what, warnings_fail=False)
                report(f"{what} (with the files as they were)")
            except MailServerError as reload_error:
                report(f"could not reload after restoring: {reload_error}")
        raise
    report(f"the files as they were are kept in {backup_dir}")
    return changed
