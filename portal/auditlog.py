"""How audit rows read on the pages and in CSV: the names of the actions and a one-line summary."""

from __future__ import annotations

import json

# Every action the portal and its commands write, with what a person calls it.
ACTIONS = {
    "password.change": "password changed by its owner",
    "forwarding.update": "forwarding changed",
    "alias.personal.add": "personal address added",
    "alias.personal.delete": "personal address removed",
    "mailbox.create": "mailbox created",
    "mailbox.update": "mailbox changed",
    "mailbox.delete": "mailbox deleted",
    "mailbox.purge": "deleted mailbox's mail removed",
    "mailbox.quota": "size limit set",
    "mailbox.password_reset": "password reset (one-time password given)",
    "mailbox.unlock": "sign-in failures cleared",
    "mailbox.disable": "mailbox disabled",
    "mailbox.enable": "mailbox enabled",
    "alias.create": "alias created",
    "alias.update": "alias changed",
    "alias.delete": "alias deleted",
    "domain.create": "domain created",
    "domain.update": "domain settings changed",
    "domain.delete": "domain deleted",
    "role.grant": "role given",
    "role.revoke": "role taken back",
}


def action_label(action: str) -> str:
    """What a person calls an action (the action itself if it is not known)."""
    return ACTIONS.get(action, action)


def summary_text(summary: dict | None) -> str:
    """A row's before/after summary on one line, ``key: value; ...``."""
    if not summary:
        return ""
    parts = []
    for key, value in summary.items():
        if isinstance(value, dict) and set(value) == {"before", "after"}:
            value = f"{_value(value['before'])} \u2192 {_value(value['after'])}"
        else:
            value = _value(value)
        parts.append(f"{key.replace('_', ' ')}: {value}")
    return "; ".join(parts)


def _value(value) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "none"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)
