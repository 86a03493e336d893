"""Dovecot's effective configuration as ``doveconf`` prints it, for Dovecot 2.3 and 2.4 alike.

``doctor`` reads what Dovecot itself will use, not the files it guesses:
``doveconf -n`` (the settings that differ from the defaults, includes resolved)
and ``doveconf -f protocol=NAME -h mail_plugins`` (the plugins a protocol
really loads, after every ``protocol {}`` filter).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from dataclasses import field


class DoveconfUnavailable(Exception):
    """doveconf is not on this host, or it failed; the message says which."""


def _doveconf(config_file: str | None, *args: str) -> str:
    doveconf = shutil.which("doveconf") or shutil.which("doveconf", path="/usr/bin:/usr/sbin")
    if doveconf is None:
        raise DoveconfUnavailable("doveconf is not on this host")
    command = [doveconf, *(["-c", config_file] if config_file else []), *args]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=10)  # noqa: S603
    except (subprocess.TimeoutExpired, OSError) as exc:
        raise DoveconfUnavailable(f"doveconf did not answer ({type(exc).__name__})") from None
    if result.returncode != 0:
        raise DoveconfUnavailable(f"doveconf failed: {result.stderr.strip()[:200]}")
    return result.stdout


@dataclass
class Section:
    """One top-level section, such as ``passdb {`` (2.3) or ``passdb sql {`` (2.4), with its direct settings."""

    kind: str
    name: str
    settings: dict[str, str] = field(default_factory=dict)


@dataclass
class DovecotSettings:
    """The output of ``doveconf -n``, read."""

    series: str
    top: dict[str, str]
    sections: list[Section]
    text: str

    def value(self, name: str, default: str = "") -> str:
        """A top-level setting, or ``default`` when doveconf -n leaves it out (it is at its default)."""
        return self.top.get(name, default)

    def of_kind(self, kind: str) -> list[Section]:
        """The top-level sections of one kind (``passdb``, ``userdb``, ``protocol``...)."""
        return [s for s in self.sections if s.kind == kind]


def parse(text: str) -> DovecotSettings:
    """Read ``doveconf -n`` output: its version line, top-level settings and top-level sections."""
    version = re.match(r"#\s*(\d+\.\d+)", text)
    series = "2.4" if version and version.group(1) >= "2.4" else "2.3"
    top: dict[str, str] = {}
    sections: list[Section] = []
    depth = 0
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("{"):
            if depth == 0:
                words = line[:-1].split(None, 1)
                sections.append(Section(words[0], words[1].strip().strip('"') if len(words) > 1 else ""))
            depth += 1
            continue
        if line == "}":
            depth -= 1
            continue
        key, sep, value = line.partition(" = ")
        if not sep:
            key, value = line.rstrip(" ="), ""
        if depth == 0:
            top[key] = value
        elif depth == 1 and sections:
            sections[-1].settings[key] = value
    return DovecotSettings(series, top, sections, text)


def read(config_file: str | None = None) -> DovecotSettings:
    """Dovecot's non-default settings on this host (``config_file``: its main file, else Dovecot's own)."""
    return parse(_doveconf(config_file, "-n"))


def _plugin_switches(output: str) -> dict[str, bool]:
    return {m.group(1): m.group(2) == "yes" for m in re.finditer(r"^\s*(\w+)\s*=\s*(yes|no)\s*$", output, re.M)}


def protocol_plugins(config_file: str | None, protocol: str) -> set[str]:
    """The mail plugins ``protocol`` really loads.

    2.3 prints the filter's effective word list, in which a ``protocol`` section
    of an earlier file that sets ``mail_plugins`` without ``$mail_plugins`` loses
    the global ones. 2.4 prints ``name = yes`` lines, only the filter's own when
    it has any: they add to (or, with ``= no``, take from) the global ones."""
    output = _doveconf(config_file, "-f", f"protocol={protocol}", "-h", "mail_plugins")
    if "=" not in output:
        return set(output.split())
    switches = _plugin_switches(_doveconf(config_file, "-h", "mail_plugins")) | _plugin_switches(output)
    return {name for name, on in switches.items() if on}


def sql_password_queries(settings: DovecotSettings) -> list[tuple[str, str]]:
    """(where it is, the query) of every SQL passdb: inline in 2.4, in the ``args`` file in 2.3.

    Raises :class:`OSError` when a 2.3 args file cannot be read (doctor must run as root)."""
    found = []
    for section in settings.of_kind("passdb"):
        if settings.series == "2.4":
            # "passdb sql { query }", or a passdb of another name: "passdb NAME { driver = sql  sql_query }".
            query = section.settings.get("query", section.settings.get("sql_query"))
            if section.settings.get("driver", section.name) == "sql" or query is not None:
                found.append((f"passdb {section.name}", query or ""))
        elif section.settings.get("driver") == "sql":
            path = section.settings.get("args", "")
            with open(path) as handle:
                text = handle.read()
            queries = re.findall(r"^\s*password_query\s*=(.*(?:\n[ \t]+.*)*)", text, re.M)
            found += [(path, query.strip()) for query in queries] or [(path, "")]
    return found


def username_formats(settings: DovecotSettings) -> dict[str, str]:
    """The ``auth_username_format`` each protocol's lookups use: the global one, or its ``protocol {}`` filter's."""
    default = "%{user | lower}" if settings.series == "2.4" else "%Lu"
    formats = {"global": settings.value("auth_username_format", default)}
    for section in settings.of_kind("protocol"):
        if "auth_username_format" in section.settings:
            formats[section.name] = section.settings["auth_username_format"]
    return formats


def drops_the_domain(username_format: str) -> bool:
    """Whether a format keeps only the local part (``%n``, ``%{user | username}``) and loses the domain."""
    local_only = re.search(r"(?<!%)%L?n|%\{\s*(?:user\s*\|\s*)?username\b|\busername\s*\|", username_format)
    keeps_domain = re.search(r"%L?d\b|domain", username_format)
    return bool(local_only) and not keeps_domain


# Dovecot 2.3's variables (%u, %Lu, %d, %n...), which 2.4 passes through literally.
OLD_VARIABLE = re.compile(r"(?<!%)%L?[udnrlp](?![A-Za-z{])")


def leftover_old_variables(settings: DovecotSettings) -> list[str]:
    """Settings of a 2.4 configuration that still use 2.3 variables (each sent literally: logins fail)."""
    if settings.series != "2.4":
        return []
    lines = []
    for raw in settings.text.splitlines():
        if " = " in raw and not raw.lstrip().startswith("#"):
            key, _, value = raw.strip().partition(" = ")
            if OLD_VARIABLE.search(value):
                lines.append(key)
    return lines


@dataclass
class QuotaWarningHook:
    """The storage percentages whose quota warning runs a service, and that service's executable and user."""

    percentages: list[int]
    executable: str
    user: str


def _sections(text: str):
    """Every setting of ``doveconf -n`` output with the headers of the sections it sits in (outermost first)."""
    stack: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("{"):
            stack.append(line[:-1].strip())
            yield tuple(stack), None, None
        elif line == "}":
            if stack:
                stack.pop()
        else:
            key, _, value = line.partition(" = ")
            yield tuple(stack), key.rstrip(" ="), value


def quota_warning_hook(settings: DovecotSettings, service: str = "quota-warning") -> QuotaWarningHook:
    """Which storage warnings run ``service``, and how Dovecot runs it (empty executable: no such service).

    2.3 has ``quota_warning*`` plugin settings; 2.4 ``warning NAME {}`` filters (``doveconf -n`` prints
    ``quota_warning NAME {}``) with an ``execute NAME {}`` filter, inside a quota section."""
    percentages: set[int] = set()
    executable = user = ""
    warnings: dict[tuple[str, ...], dict[str, str]] = {}
    for path, key, value in _sections(settings.text):
        if path and path[0].split()[:2] == ["service", service] and len(path) == 1 and key:
            executable = value if key == "executable" else executable
            user = value if key == "user" else user
        if settings.series == "2.3":
            if path == ("plugin",) and key and key.startswith("quota_warning"):
                match = re.match(r"\+?storage=(\d+)%{1,2}\s+(\S+)", value)
                if match and match.group(2) == service:
                    percentages.add(int(match.group(1)))
            continue
        # 2.4: a warning filter, inside a quota section, with its percentage, threshold and execute filter.
        at = next((i for i, header in enumerate(path) if header.split()[0] in ("warning", "quota_warning")), None)
        if at is None:
            continue
        warning = warnings.setdefault(path[:at + 1], {})
        inner = path[at + 1:]
        if key is None and len(inner) == 1 and inner[0].split()[0] in ("execute", "quota_warning_execute"):
            warning["execute"] = inner[0].split()[1].strip('"') if len(inner[0].split()) > 1 else ""
        elif key and not inner:
            warning[key] = value
    for values in warnings.values():
        storage = values.get("quota_warning_resource", values.get("resource", "storage")) == "storage"
        over = values.get("quota_warning_threshold", values.get("threshold", "over")) == "over"
        percentage = values.get("quota_storage_percentage", "")
        if values.get("execute") == service and storage and over and percentage.isdigit():
            percentages.add(int(percentage))
    return QuotaWarningHook(sorted(percentages), executable, user)
