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
    "domain.app_passwords": _l("app passwords required or not for mail programs"),
    "vacation.update": _l("out-of-office reply changed"),
    "filters.update": _l("filters changed"),
    "second_factor.add": _l("second step added to the sign-in"),
    "second_factor.remove": _l("second step removed from the sign-in"),
    "second_factor.remove_all": _l("every second step removed (lost phone)"),
    "second_factor.recovery_codes": _l("new recovery codes made"),
    "second_factor.recovery_code_used": _l("signed in with a recovery code"),
    "mailbox.mail_clients": _l("mail programs kept to app passwords, or not"),
    "app_password.create": _l("app password made"),
    "app_password.revoke": _l("app password revoked"),
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
    "enabled": _l("on"), "subject": _l("subject"), "body_sha256": _l("text (its SHA-256)"),
    "first_day": _l("from"), "last_day": _l("until"), "interval_days": _l("days between replies"),
    "addresses": _l("addresses"), "kept_script": _l("other script kept"), "count": _l("how many"),
    "actions": _l("actions"), "forwards_to": _l("forwards copies to"), "kind": _l("kind"), "first": _l("first one"),
    "passkey": _l("passkey"), "totp": _l("authenticator app"), "passkeys": _l("passkeys"),
    "recovery_codes": _l("recovery codes"), "left": _l("left"), "app_passwords_only": _l("app passwords only"),
    "app_password": _l("app password"), "services": _l("services"),
    "app_passwords_revoked": _l("app passwords revoked"),
    "required": _l("required"), "allowed": _l("allowed"), "verified": _l("confirmed"), "found": _l("folder found"),
}
# Stored words that are shown translated.
SUMMARY_VALUES = {
    "every domain": _l("every domain"), "superadmin": _l("superadmin"), "domain_admin": _l("domain admin"),
    "helpdesk": _l("helpdesk"), "domains": _l("domains"), "mailboxes": _l("mailboxes"), "aliases": _l("aliases"),
    "totp": _l("authenticator app"), "passkey": _l("passkey"), "fileinto": _l("move to folder"),
    "redirect": _l("forward a copy to"), "seen": _l("mark as read"), "discard": _l("delete"),
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
    if key in ("purge_after", "expires_at") and isinstance(value, str):
        return value[:10]  # stored as an ISO moment; the day is what the reader needs
    if key == "body_sha256" and isinstance(value, str):
        return value[:12]  # enough to tell two texts apart
    return str(value)
