"""How audit rows read on the pages and in CSV: the names of the actions and a one-line summary."""

from __future__ import annotations

from . import quota
from .i18n import _
from .i18n import _l

# Every action the portal and its commands write, with what a person calls it.
ACTIONS = {
    "password.change": _l("password changed by its owner"),
    "forwarding.update": _l("forwarding changed"),
    "alias.personal.add": _l("personal address added"),
    "alias.personal.delete": _l("personal address removed"),
    "mailbox.create": _l("mailbox created"),
    "mailbox.update": _l("mailbox changed"),
    "mailbox.delete": _l("mailbox deleted"),
    "mailbox.purge": _l("deleted mailbox's mail removed"),
    "mailbox.quota": _l("size limit set"),
    "mailbox.password_reset": _l("password reset (one-time password given)"),
    "mailbox.unlock": _l("sign-in failures cleared"),
    "mailbox.disable": _l("mailbox disabled"),
    "mailbox.enable": _l("mailbox enabled"),
    "alias.create": _l("alias created"),
    "alias.update": _l("alias changed"),
    "alias.delete": _l("alias deleted"),
    "alias.destination_removed": _l("aliases lost a destination (its mailbox was deleted)"),
    "domain.create": _l("domain created"),
    "domain.update": _l("domain settings changed"),
    "domain.delete": _l("domain deleted"),
    "role.grant": _l("role given"),
    "role.revoke": _l("role taken back"),
    "alias_domain.create": _l("alias domain linked"),
    "alias_domain.enable": _l("alias domain enabled"),
    "alias_domain.disable": _l("alias domain disabled"),
    "alias_domain.delete": _l("alias domain unlinked"),
    "send_as.grant": _l("may send as another address"),
    "send_as.revoke": _l("may no longer send as another address"),
    "api_token.create": _l("API token made"),
    "api_token.revoke": _l("API token revoked"),
    "password.recover": _l("password reset through the recovery address"),
    "recovery.update": _l("recovery address changed"),
    "recovery.verify": _l("recovery address confirmed"),
    "domain.recovery": _l("password recovery switched on or off"),
}


def action_label(action: str) -> str:
    """What a person calls an action (the action itself if it is not known)."""
    return str(ACTIONS.get(action, action))


# The keys of audit summaries, as people call them.
SUMMARY_KEYS = {
    "active": _l("active"), "display_name": _l("name"), "quota_bytes": _l("size limit"),
    "password_changed": _l("password changed"), "must_change": _l("must change password"),
    "sessions_ended": _l("sessions ended"), "scheme": _l("hash scheme"), "was_forced": _l("change was required"),
    "failures": _l("failed sign-ins"), "locked_until": _l("locked until"), "reason": _l("reason"),
    "role": _l("role"), "in": _l("in"), "destination": _l("delivers to"), "destinations": _l("delivers to"),
    "keep_copy": _l("keeps a copy"), "maildir": _l("maildir"), "purge_after": _l("mail kept until"),
    "aliases_left_without_destination": _l("aliases left without a destination"), "mailboxes": _l("mailboxes"),
    "aliases": _l("aliases"), "import": _l("imported from CSV"), "max_mailboxes": _l("most mailboxes"),
    "max_aliases": _l("most aliases"), "default_quota_bytes": _l("default size limit"),
    "max_quota_bytes": _l("largest size limit"), "allow_personal_aliases": _l("personal addresses allowed"),
    "max_personal_aliases": _l("personal addresses per user"), "before": _l("before"), "after": _l("after"),
    "target": _l("mirrors"), "removed_aliases": _l("aliases removed"), "address": _l("address"),
    "api_tokens_revoked": _l("API tokens revoked"), "token": _l("token"), "name": _l("name"),
    "read_only": _l("read only"), "domains": _l("domains"), "expires_at": _l("valid until"),
}
# Stored words that are shown translated.
SUMMARY_VALUES = {
    "every domain": _l("every domain"), "superadmin": _l("superadmin"), "domain_admin": _l("domain admin"),
    "helpdesk": _l("helpdesk"), "domains": _l("domains"), "mailboxes": _l("mailboxes"), "aliases": _l("aliases"),
}


def summary_text(summary: dict | None) -> str:
    """A row's before/after summary on one line, ``key: value; ...``, in the page's language."""
    if not summary:
        return ""
    parts = []
    for key, value in summary.items():
        if isinstance(value, dict) and set(value) == {"before", "after"}:
            value = f"{_value(value['before'], key)} \u2192 {_value(value['after'], key)}"
        else:
            value = _value(value, key)
        parts.append(f"{_key(key)}: {value}")
    return "; ".join(parts)


def _key(key: str) -> str:
    return str(SUMMARY_KEYS.get(key, key.replace("_", " ")))


def _value(value, key: str = "") -> str:
    if key.endswith("_bytes") and isinstance(value, int) and not isinstance(value, bool):
        return quota.format_size(value) if value else _("none")
    if isinstance(value, dict):
        return ", ".join(f"{_key(k)} {_value(v, k)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(map(str, value)) or _("none")
    if isinstance(value, bool):
        return _("yes") if value else _("no")
    if value is None:
        return _("none")
    if isinstance(value, str) and value in SUMMARY_VALUES:
        return str(SUMMARY_VALUES[value])
    if key == "purge_after" and isinstance(value, str):
        return value[:10]  # stored as an ISO moment; the day is what the reader needs
    return str(value)
