"""Mail the portal writes to its users, in their language: notices of changes, links, quota warnings.

A notice is queued in the transaction of the change it reports (portal_outbox), so it
exists exactly when the change does, and sent once that transaction has committed: by a
background thread after the response in a request (never by the thread that serves the
connection, so neither the page nor the next request on it waits for the mail server),
at the end of a command. A failed send never undoes the change and never fails the
request; it is logged, kept and retried by ``flask notices send``. Mail that carries a
link with a token is never queued: it is sent once, and a failure only means the user
asks again.

The mailbox's own copy of a notice is saved straight into its INBOX through Dovecot
(doveadm save) when the doveadm API is configured: whoever changed the forwarding or the
filters cannot divert or delete the notice of it with those very settings. Copies to the
recovery address, and quota warnings, go through Postfix.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime

from flask import current_app
from flask import g
from flask import has_app_context
from flask import has_request_context
from flask import render_template
from flask_babel import force_locale

from . import db
from . import doveadm
from . import mailer
from .i18n import _
from .queries import notices as notice_queries

log = logging.getLogger(__name__)

# Notices sent right after a request: only the ones it queued, so a dead mail server
# delays nobody else's page; older ones wait for "flask notices send".
SEND_NOW_LIMIT = 10
SEND_BATCH = 50


@dataclass(frozen=True)
class Change:
    """Who made a change, in the words a notice may use: a role and a client address, never a name."""

    role: str  # user, recovery, helpdesk, domain_admin, superadmin, cli
    client_addr: str | None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def of_audit(cls, who: dict) -> Change:
        """The change an audit row's actor columns describe."""
        return cls(who["actor_role"], who.get("client_addr"))


@dataclass
class Letter:
    """One message before it is addressed: its subject, paragraphs and an optional link."""

    subject: str
    paragraphs: list[str]
    link: tuple[str, str] | None = None  # (label, URL)


def enabled(config=None) -> bool:
    """Whether the portal sends mail at all (NOTICE_FROM is set)."""
    config = config if config is not None else (current_app.config if has_app_context() else {})
    return bool(config.get("NOTICE_FROM"))


def language_of(conn, mailbox_id: int | None) -> str:
    """The language the user last used the portal in, else the portal's default."""
    chosen = notice_queries.settings_of(conn, mailbox_id)["language"] if mailbox_id else None
    return chosen or current_app.config["DEFAULT_LANGUAGE"]


def public_link(path: str) -> str | None:
    """``path`` under the configured PUBLIC_URL (never the request's Host); None when it is not set."""
    base = str(current_app.config["PUBLIC_URL"] or "").rstrip("/")
    return f"{base}{path}" if base else None


def _who(change: Change) -> str:
    if change.role == "user":
        return _("you, signed in to the portal")
    if change.role == "recovery":
        return _("a password recovery link sent to your recovery address")
    if change.role == "helpdesk":
        return _("the helpdesk")
    return _("an administrator")


def _when_and_where(change: Change) -> str:
    when = change.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    where = change.client_addr or _("the server itself")
    return _("When: %(when)s. By: %(who)s. From the address: %(where)s.", when=when, who=_who(change),
             where=where)


def _if_not_you() -> str:
    return _("If you did not ask for this, sign in and change your password at once, check where your mail is "
             "forwarded, and tell your administrator.")


def _sign_in_link() -> tuple[str, str] | None:
    url = public_link("/auth/login")
    return (_("Sign in to the mail portal"), url) if url else None


def password_changed(address: str, change: Change) -> Letter:
    """The notice that the mailbox's password was changed."""
    return Letter(_("The password of %(address)s was changed", address=address),
                  [_("The password of your mailbox %(address)s was changed. Mail programs need the new one.",
                     address=address), _when_and_where(change), _if_not_you()], _sign_in_link())


def forwarding_changed(address: str, destinations: list[str], keep_copy: bool, change: Change,
                       *, by_filter: bool = False) -> Letter:
    """The notice that mail to the mailbox now also goes to ``destinations``."""
    if by_filter:
        what = _("A filter of your mailbox %(address)s now sends copies of some messages to: %(destinations)s.",
                 address=address, destinations=", ".join(destinations))
    elif keep_copy:
        what = _("Mail to your mailbox %(address)s is now forwarded to: %(destinations)s. A copy stays in your "
                 "mailbox.", address=address, destinations=", ".join(destinations))
    else:
        what = _("Mail to your mailbox %(address)s is now forwarded to: %(destinations)s. No copy stays in your "
                 "mailbox.", address=address, destinations=", ".join(destinations))
    return Letter(_("Mail to %(address)s is now forwarded", address=address),
                  [what, _when_and_where(change), _if_not_you()], _sign_in_link())


def api_token_created(address: str, name: str, change: Change) -> Letter:
    """The notice that an API token was made with the mailbox's roles."""
    return Letter(_("A new API token for %(address)s", address=address),
                  [_("An API token named \u201c%(name)s\u201d was made for %(address)s. It can act with this mailbox's "
                     "roles until it is revoked.", name=name, address=address),
                   _when_and_where(change), _if_not_you()], _sign_in_link())


def app_password_created(address: str, name: str, change: Change) -> Letter:
    """The notice that an app password was made for the mailbox's mail clients."""
    return Letter(_("A new app password for %(address)s", address=address),
                  [_("An app password named \u201c%(name)s\u201d was made for %(address)s. A mail client can read "
                     "or send this mailbox's mail with it until it is revoked.", name=name, address=address),
                   _when_and_where(change), _if_not_you()], _sign_in_link())


def second_factor_changed(address: str, event: str, change: Change) -> Letter:
    """The notice that the mailbox's two-step sign-in changed (``event``: added, removed, or removed_by_other)."""
    what = {
        "added": _("A second step was added to the portal sign-in of %(address)s.", address=address),
        "removed": _("A second step was removed from the portal sign-in of %(address)s.", address=address),
        "removed_by_other": _("Every second step of the portal sign-in of %(address)s was removed by someone who "
                              "supports your domain. The password alone now signs in.", address=address),
    }[event]
    return Letter(_("The two-step sign-in of %(address)s was changed", address=address),
                  [what, _when_and_where(change), _if_not_you()], _sign_in_link())


def second_step_locked(address: str, failures: int, until: datetime, client_addr: str | None) -> Letter:
    """The warning that the right password of the mailbox was followed by too many wrong second steps: whoever
    did it knows the password."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return Letter(_("Someone knows the password of %(address)s", address=address),
                  [_("The right password of your mailbox %(address)s was typed at the mail portal, followed by "
                     "%(n)s wrong codes for the second step. The second step of its portal sign-in is locked until "
                     "%(until)s.", address=address, n=failures, until=until.astimezone(UTC).strftime("%H:%M UTC")),
                   _("Last attempt: %(when)s, from the address %(where)s.", when=when,
                     where=client_addr or _("the server itself")),
                   _("If this was not you, your second step kept them out, but they know your password: once the "
                     "lock ends, sign in and change it, and check that your mail programs use app passwords. "
                     "Tell your administrator.")],
                  _sign_in_link())


def recovery_changed(address: str, new_recovery: str | None, change: Change) -> Letter:
    """The notice that the mailbox's recovery address was set, changed or removed."""
    if new_recovery:
        what = _("The recovery address of your mailbox %(address)s was changed to %(recovery)s. It counts once "
                 "the link sent to it is opened.", address=address, recovery=new_recovery)
    else:
        what = _("The recovery address of your mailbox %(address)s was removed.", address=address)
    return Letter(_("The recovery address of %(address)s was changed", address=address),
                  [what, _when_and_where(change), _if_not_you()], _sign_in_link())


def quota_warning(address: str, percent: int, limit: str) -> Letter:
    """The warning that the mailbox passed ``percent`` of its limit."""
    url = public_link("/account/storage")
    return Letter(_("Your mailbox %(address)s is %(percent)s percent full", address=address, percent=percent),
                  [_("Your mailbox %(address)s now uses more than %(percent)s percent of its %(limit)s.",
                     address=address, percent=percent, limit=limit),
                   _("When it is full, new mail is refused and returned to its senders. Delete old mail, or empty "
                     "the trash, to make room.")],
                  (_("See your storage"), url) if url else None)


def verify_link(address: str, recovery: str, url: str) -> Letter:
    """The link that makes ``recovery`` count as the recovery address of ``address``."""
    return Letter(_("Confirm the recovery address of %(address)s", address=address),
                  [_("This address, %(recovery)s, was given as the recovery address of the mailbox %(address)s. Open "
                     "the link within 24 hours to confirm it; a forgotten password can then be reset through it.",
                     recovery=recovery, address=address),
                   _("If you do not know this mailbox, ignore this message: nothing happens without the link.")],
                  (_("Confirm this recovery address"), url))


def reset_link(address: str, url: str) -> Letter:
    """The link to choose a new password for ``address``, sent to its recovery address."""
    return Letter(_("A new password for %(address)s", address=address),
                  [_("Someone asked to reset the password of the mailbox %(address)s. Open the link within 30 minutes "
                     "to choose a new one; it works once.", address=address),
                   _("If it was not you, ignore this message: the password stays as it is. Nobody can use the link "
                     "without this mailbox.")],
                  (_("Choose a new password"), url))


def _message(letter: Letter, recipient: str, language: str) -> bytes:
    config = current_app.config
    text = render_template("notices/notice.txt", letter=letter)
    html = render_template("notices/notice.html", letter=letter, language=language)
    message = mailer.compose(sender=config["NOTICE_FROM"], recipient=recipient, subject=letter.subject,
                             text=text, html=html, language=language)
    return bytes(message)


def _written(conn, mailbox_id: int | None, build, *args, **kwargs) -> tuple[Letter, str]:
    """Build a letter in the mailbox owner's language; return it with that language."""
    language = language_of(conn, mailbox_id)
    with force_locale(language):
        return build(*args, **kwargs), language


def _recipients(conn, mailbox: dict, *, also_recovery: bool) -> list[str]:
    recipients = [mailbox["email"]]
    if also_recovery:
        settings = notice_queries.settings_of(conn, mailbox["id"])
        if settings["recovery_verified_at"] and settings["recovery_address"] not in recipients:
            recipients.append(settings["recovery_address"])
    return recipients


def queue(conn, mailbox: dict, kind: str, build, *args, also_recovery: bool = True,
          extra_recipients: tuple[str, ...] = (), through_postfix: bool = False, **kwargs) -> list[int]:
    """Queue a notice about ``mailbox`` (in the caller's transaction), written by ``build(*args, **kwargs)`` in
    the owner's language, to the mailbox and (``also_recovery``) its verified recovery address; it is sent
    after the transaction commits. The mailbox's copy is saved into its INBOX unless ``through_postfix`` or
    the doveadm API is not configured. Nothing when the portal sends no mail."""
    if not enabled():
        return []
    letter, language = _written(conn, mailbox["id"], build, *args, **kwargs)
    recipients = _recipients(conn, mailbox, also_recovery=also_recovery)
    recipients += [r for r in extra_recipients if r and r not in recipients]
    direct = not through_postfix and doveadm.is_configured(current_app.config)
    with force_locale(language):
        ids = [notice_queries.queue(conn, kind, recipient,
                                    "mailbox" if direct and recipient == mailbox["email"] else "smtp",
                                    _message(letter, recipient, language))
               for recipient in recipients]
    _send_after_commit(ids)
    return ids


def send_now(conn, mailbox_id: int | None, recipient: str, build, *args, **kwargs) -> bool:
    """Send a letter that must not be stored (it carries a link with a token) at once; return whether the SMTP
    server took it. A failure is logged, without the message."""
    if not enabled():
        return False
    letter, language = _written(conn, mailbox_id, build, *args, **kwargs)
    with force_locale(language):
        message = _message(letter, recipient, language)
    try:
        mailer.send(current_app.config, current_app.config["NOTICE_FROM"], recipient, message)
    except mailer.MailerUnavailable as exc:
        log.error("a message with a link could not be sent: %s", exc)
        return False
    return True


# Senders in the background, per process (made after gunicorn's fork, on first use).
_SENDERS: dict[int, ThreadPoolExecutor] = {}
_SENDERS_LOCK = threading.Lock()
SENDER_THREADS = 2


def _in_background(work) -> None:
    with _SENDERS_LOCK:
        executor = _SENDERS.get(os.getpid())
        if executor is None:
            executor = _SENDERS[os.getpid()] = ThreadPoolExecutor(SENDER_THREADS, thread_name_prefix="portal-notices")
    executor.submit(work)


def send_after_response(response, mailbox_id: int, recipient: str, build, *args) -> None:
    """Send a letter that must not be stored, in the background once ``response`` has gone out: the request,
    and the next one on its connection, take as long whether or not there is anything to send."""
    app = current_app._get_current_object()

    def send():
        try:
            with app.app_context(), db.get_pool(app).connection(timeout=float(app.config["DB_POOL_TIMEOUT"])) as conn:
                send_now(conn, mailbox_id, recipient, build, *args)
        except Exception:  # noqa: BLE001 - in the background, nothing may surface as an error page
            log.exception("a message with a link could not be written")

    response.call_on_close(lambda: _in_background(send))


def _send_after_commit(ids: list[int]) -> None:
    # Requests send after the response has gone out (the change is committed by then);
    # commands when their app context ends.
    if ids:
        g.setdefault("queued_notices", []).extend(ids)


def send_due(app, ids: list[int] | None = None, limit: int = SEND_BATCH) -> dict:
    """Send due notices (only ``ids``, when given) through the SMTP server; return how many were sent and failed.

    Never raises for a mail server or database that is away: that is logged, and the notices stay queued."""
    sent = failed = 0
    try:
        with app.app_context(), db.get_pool(app).connection(timeout=float(app.config["DB_POOL_TIMEOUT"])) as conn:
            while True:
                with conn.transaction():
                    rows = notice_queries.lock_due(conn, ids, limit)
                    for row in rows:
                        try:
                            _deliver(app.config, row)
                        except (mailer.MailerUnavailable, doveadm.DoveadmUnavailable) as exc:
                            log.warning("notice %s not sent (try %s): %s", row["id"], row["attempts"] + 1, exc)
                            notice_queries.mark_failed(conn, row["id"], str(exc))
                            failed += 1
                        else:
                            notice_queries.mark_sent(conn, row["id"])
                            sent += 1
                if ids is not None or len(rows) < limit:
                    break
    except Exception:  # noqa: BLE001 - after the response, nothing may surface as an error page
        log.exception("sending notices failed; they stay queued")
    return {"sent": sent, "failed": failed}


def _deliver(config, row: dict) -> None:
    message = bytes(row["message"])
    if row["delivery"] == "mailbox":
        doveadm.save_to_inbox(config, row["recipient"], message.replace(b"\r\n", b"\n"))
    else:
        mailer.send(config, config["NOTICE_FROM"], row["recipient"], message)


def init_app(app) -> None:
    """Send the notices a request or command queued once it is over."""

    @app.after_request
    def _send_after_response(response):
        ids = g.pop("queued_notices", None)
        if ids:
            response.call_on_close(lambda: _in_background(lambda: send_due(app, ids[:SEND_NOW_LIMIT])))
        return response

    @app.teardown_appcontext
    def _send_after_command(exc):
        ids = g.pop("queued_notices", None)
        if ids and exc is None and not has_request_context():
            send_due(app, ids[:SEND_NOW_LIMIT])
