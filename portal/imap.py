"""Dovecot, reached over IMAP with imapclient."""

from __future__ import annotations

import socket
import ssl

import imapclient
from imapclient.exceptions import IMAPClientError


class ImapUnavailable(Exception):
    """Dovecot could not be reached or did not answer in time."""


def _tls_context(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def connect(host: str, port: int, security: str, timeout: float, tls_verify: bool = True):
    """Open an IMAP connection with the configured transport security.

    Raises :class:`ImapUnavailable` when Dovecot is down, slow or refuses TLS.
    """
    timeouts = imapclient.SocketTimeout(connect=timeout, read=timeout)
    try:
        if security == "tls":
            client = imapclient.IMAPClient(
                host, port=port, ssl=True, ssl_context=_tls_context(tls_verify), timeout=timeouts
            )
        else:
            client = imapclient.IMAPClient(host, port=port, ssl=False, timeout=timeouts)
            if security == "starttls":
                client.starttls(_tls_context(tls_verify))
    except (OSError, IMAPClientError, ssl.SSLError) as exc:
        raise ImapUnavailable(f"cannot reach the IMAP server at {host}:{port}: {_describe(exc)}") from exc
    return client


def connect_from_config(config):
    """Open an IMAP connection using the portal's IMAP_* settings."""
    return connect(
        config["IMAP_HOST"],
        int(config["IMAP_PORT"]),
        config["IMAP_SECURITY"],
        float(config["IMAP_TIMEOUT"]),
        bool(config["IMAP_TLS_VERIFY"]),
    )


def check_reachable(config, timeout: float) -> list[str]:
    """Connect, read the capabilities and log out; return the capabilities."""
    settings = dict(config)
    settings["IMAP_TIMEOUT"] = timeout
    client = connect_from_config(settings)
    try:
        capabilities = [c.decode("ascii", "replace") for c in client.capabilities()]
    except (OSError, IMAPClientError) as exc:
        raise ImapUnavailable(f"the IMAP server did not answer: {_describe(exc)}") from exc
    finally:
        _close_quietly(client)
    return capabilities


def _close_quietly(client) -> None:
    try:
        client.logout()
    except Exception:  # noqa: BLE001 - the connection is being thrown away anyway
        try:
            client.shutdown()
        except Exception:  # noqa: BLE001, S110
            pass


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return str(exc) or exc.__class__.__name__
