"""Dovecot's doveadm HTTP API: ending the open mail sessions of mailboxes the portal takes away from someone.

A disabled mailbox or domain, a deleted mailbox and a new password all change
rows that Dovecot reads at the next login; an IMAP or POP3 connection that is
already open would go on reading mail. After such a change is committed, the
rule calls :func:`end_mail_sessions`, which asks Dovecot to kick every matching
connection (``doveadm kick``) over its HTTP API (``DOVEADM_URL``,
``DOVEADM_API_KEY``). Dovecot 2.3 and 2.4 answer it alike.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import re
from urllib.parse import urlsplit

from flask import current_app
from flask import has_app_context

log = logging.getLogger(__name__)

# sysexits EX_NOUSER: doveadm found nobody connected (or cached) under that mask.
_NOBODY_MATCHED = 68


class DoveadmUnavailable(Exception):
    """Dovecot's doveadm HTTP API could not be reached, refused the key, or failed the command."""


def _post(config, commands: list) -> list:
    url = urlsplit(config["DOVEADM_URL"])
    key = base64.b64encode(str(config["DOVEADM_API_KEY"]).encode()).decode()
    connection_class = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(url.hostname, url.port, timeout=float(config["DOVEADM_TIMEOUT"]))
    try:
        # Not urllib: it sends "Connection: close", and Dovecot 2.3 then never answers a refused key.
        connection.request("POST", url.path or "/", body=json.dumps(commands),
                           headers={"Authorization": f"X-Dovecot-API {key}", "Content-Type": "application/json"})
        response = connection.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise DoveadmUnavailable(f"doveadm could not be reached: {type(exc).__name__}: {exc}") from None
    finally:
        connection.close()
    if response.status != 200:
        # 401 means a wrong key; the key itself is never part of the message.
        raise DoveadmUnavailable(f"doveadm answered HTTP {response.status}")
    try:
        return json.loads(body)
    except ValueError:
        raise DoveadmUnavailable("doveadm answered something other than JSON") from None


def kick(config, masks: list[str]) -> None:
    """Disconnect every IMAP/POP3 session whose user matches one of ``masks`` (an address or ``*@domain``).

    Nobody connected is not an error. Dovecot's auth cache is not flushed: the
    portal needs it off (``doctor`` fails where it is on), and doveadm's
    ``authCacheFlush`` over HTTP kills its worker in 2.3 without names and in
    2.4.1 with them."""
    # One mask per kick: doveadm refuses several in one.
    answers = _post(config, [["kick", {"mask": [mask]}, f"kick {mask}"] for mask in masks])
    for answer in answers:
        if answer[0] == "error" and answer[1].get("exitCode") != _NOBODY_MATCHED:
            raise DoveadmUnavailable(f"doveadm {answer[2]} failed: {answer[1]}")


def folder_sizes(config, address: str) -> list[dict]:
    """The folders of a mailbox, biggest first: name, size in bytes as the quota counts it, messages."""
    answers = _post(config, [["mailboxStatus", {"user": address, "field": ["vsize", "messages"],
                                                "mailboxMask": ["*"]}, "folders"]])
    try:
        kind, body = answers[0][0], answers[0][1]
        if kind != "doveadmResponse":
            raise DoveadmUnavailable(f"doveadm mailboxStatus failed: {body}")
        folders = [{"name": str(f["mailbox"]), "bytes": int(f["vsize"]), "messages": int(f["messages"])} for f in body]
    except (IndexError, KeyError, TypeError, ValueError):
        raise DoveadmUnavailable("doveadm mailboxStatus answered in an unexpected shape") from None
    folders = [f for f in folders if not (_DOVECOT_INTERNAL.fullmatch(f["name"]) and f["messages"] == 0)]
    return sorted(folders, key=lambda f: (-f["bytes"], f["name"]))


# Where home is the maildir (the deployment guide's layout), Sieve's duplicate database
# ~/.dovecot.lda-dupes and its ".locks" directory look like Maildir++ folders to Dovecot.
_DOVECOT_INTERNAL = re.compile(r"dovecot(?:[./]lda-dupes(?:[./]locks)?)?")


def is_configured(config) -> bool:
    """Whether the portal knows where Dovecot's doveadm HTTP API is."""
    return bool(config.get("DOVEADM_URL"))


def end_mail_sessions(*masks: str) -> bool:
    """After a committed change, end the open mail sessions of these addresses (or ``*@domain``); True if done.

    Not configured, or Dovecot unreachable: logged, and the change stands (the
    connections end at their next login at the latest)."""
    if not masks or not has_app_context():
        return False
    config = current_app.config
    if not is_configured(config):
        log.info("open mail sessions of %s not ended: doveadm_url is not set", ", ".join(masks))
        return False
    try:
        kick(config, list(masks))
    except DoveadmUnavailable as exc:
        log.warning("open mail sessions of %s not ended: %s", ", ".join(masks), exc)
        return False
    log.info("ended the open mail sessions of %s", ", ".join(masks))
    return True


class SieveScriptRefused(DoveadmUnavailable):
    """Dovecot refused a Sieve script: it does not compile there (doveadm's exit code 65, EX_DATAERR)."""


class SieveUserUnknown(DoveadmUnavailable):
    """Dovecot's userdb does not return the mailbox (doveadm's exit code 67, EX_NOUSER): disabled, or gone."""


_DATA_ERROR = 65
_NO_USER = 67


def _sieve_call(config, command: str, parameters: dict) -> list:
    answers = _post(config, [[command, parameters, command]])
    try:
        kind, body = answers[0][0], answers[0][1]
    except (IndexError, KeyError, TypeError):
        raise DoveadmUnavailable(f"doveadm {command} answered in an unexpected shape") from None
    if kind == "doveadmResponse":
        return body if isinstance(body, list) else []
    if isinstance(body, dict) and body.get("exitCode") == _DATA_ERROR:
        raise SieveScriptRefused(f"doveadm {command}: the script does not compile")
    if isinstance(body, dict) and body.get("exitCode") == _NO_USER:
        raise SieveUserUnknown(f"doveadm {command}: Dovecot does not know the mailbox")
    raise DoveadmUnavailable(f"doveadm {command} failed: {body}")


def sieve_scripts(config, address: str) -> list[dict]:
    """The mailbox's Sieve scripts: ``{"name", "active"}``, by name."""
    rows = _sieve_call(config, "sieveList", {"user": address})
    try:
        scripts = [{"name": str(row["script"]), "active": str(row.get("active", "")).upper() == "ACTIVE"}
                   for row in rows]
    except (KeyError, TypeError, AttributeError):
        raise DoveadmUnavailable("doveadm sieveList answered in an unexpected shape") from None
    return sorted(scripts, key=lambda s: s["name"])


def sieve_script(config, address: str, name: str) -> str:
    """The text of one of the mailbox's Sieve scripts."""
    rows = _sieve_call(config, "sieveGet", {"user": address, "scriptname": name})
    try:
        return "".join(str(next(iter(row.values()))) for row in rows)
    except (StopIteration, AttributeError):
        raise DoveadmUnavailable("doveadm sieveGet answered in an unexpected shape") from None


def save_to_inbox(config, address: str, message: bytes) -> None:
    """Put a message straight into the mailbox's INBOX (doveadm save): past Postfix's aliases and the mailbox's
    own forwarding and filters. DoveadmUnavailable if Dovecot does not store it."""
    answers = _post(config, [["save", {"user": address, "mailbox": "INBOX",
                                       "file": message.decode("ascii", errors="replace")}, "save"]])
    try:
        kind, body = answers[0][0], answers[0][1]
    except (IndexError, TypeError):
        raise DoveadmUnavailable("doveadm save answered in an unexpected shape") from None
    if kind != "doveadmResponse":
        raise DoveadmUnavailable(f"doveadm save failed: {body}")


def put_sieve_script(config, address: str, name: str, script: str, activate: bool) -> None:
    """Store (and compile) a Sieve script for the mailbox, making it the active one when asked;
    SieveScriptRefused if Dovecot cannot compile it (nothing is stored then)."""
    _sieve_call(config, "sievePut", {"user": address, "scriptname": name, "activate": activate, "file": script})


def activate_sieve_script(config, address: str, name: str | None) -> None:
    """Make ``name`` the mailbox's active script (None: no script active)."""
    if name is None:
        _sieve_call(config, "sieveDeactivate", {"user": address})
    else:
        _sieve_call(config, "sieveActivate", {"user": address, "scriptname": name})
