"""Dovecot, reached over IMAP with imapclient."""

from __future__ import annotations

import contextlib
import socket
import ssl

import imapclient
from imapclient.exceptions import IMAPClientError

# RFC 5530 response codes that mean the credentials were refused.
_WRONG_CREDENTIALS = ("[AUTHENTICATIONFAILED]", "[AUTHORIZATIONFAILED]")


class ImapUnavailable(Exception):
    """Dovecot could not be reached or did not answer in time."""


def _tls_context(verify: bool, ca_file: str = "") -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file or None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def connect(host: str, port: int, security: str, timeout: float, tls_verify: bool = True, ca_file: str = ""):
    """Open an IMAP connection with the configured transport security.

    Raises :class:`ImapUnavailable` when Dovecot is down, slow or refuses TLS.
    """
    timeouts = imapclient.SocketTimeout(connect=timeout, read=timeout)
    client = None
    try:
        if security == "tls":
            client = imapclient.IMAPClient(
                host, port=port, ssl=True, ssl_context=_tls_context(tls_verify, ca_file), timeout=timeouts
            )
        else:
            client = imapclient.IMAPClient(host, port=port, ssl=False, timeout=timeouts)
        _no_delay(client)
        if security == "starttls":
            client.starttls(_tls_context(tls_verify, ca_file))
    except (OSError, IMAPClientError, ssl.SSLError) as exc:
        if client is not None:
            with contextlib.suppress(OSError):
                client.shutdown()
        raise ImapUnavailable(f"cannot reach the IMAP server at {host}:{port}: {_describe(exc)}") from exc
    return client


def _no_delay(client) -> None:
    """Send each command as soon as it is written (TCP_NODELAY).

    imaplib writes an AUTHENTICATE continuation and its CRLF as two small
    segments; with Nagle's algorithm the second waits for the ACK of the first,
    which Dovecot delays by some 40 ms. The option belongs to the socket's file
    descriptor, so it holds after STARTTLS wraps the socket (docs/benchmarks.md).
    """
    sock = client.socket()
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def connect_from_config(config):
    """Open an IMAP connection using the portal's IMAP_* settings."""
    return connect(
        config["IMAP_HOST"],
        int(config["IMAP_PORT"]),
        config["IMAP_SECURITY"],
        float(config["IMAP_TIMEOUT"]),
        bool(config["IMAP_TLS_VERIFY"]),
        str(config["IMAP_TLS_CA_FILE"]),
    )


def authenticate(config, address: str, password: str, client_ip: str | None = None) -> bool:
    """Ask Dovecot whether the password is right, with AUTHENTICATE PLAIN.

    Returns False for a wrong password or an unknown address (Dovecot does not
    tell them apart, nor do we). Raises :class:`ImapUnavailable` when Dovecot is
    down, slow, or answers that it cannot check right now (``[UNAVAILABLE]``).
    The browser's address goes along in IMAP ID, so that Dovecot's auth penalty
    falls on that client (trusted from the portal through login_trusted_networks).
    """
    client = connect_from_config(config)
    try:
        if client_ip:
            try:
                client.id_({"x-originating-ip": client_ip})
            except IMAPClientError:
                pass  # a server without ID still checks the password, only without the penalty fix
        # Dovecot delays its verdict on purpose after failures (see IMAP_AUTH_TIMEOUT).
        client.socket().settimeout(float(config["IMAP_AUTH_TIMEOUT"]))
        try:
            client.plain_login(address, password)
        except imapclient.exceptions.LoginError as exc:
            # imapclient turns every failure into LoginError, a dropped connection
            # included; only Dovecot's explicit verdict means "wrong password".
            if any(code in str(exc) for code in _WRONG_CREDENTIALS):
                return False
            raise ImapUnavailable(f"the IMAP server cannot check passwords now: {exc}") from exc
        return True
    except (OSError, ssl.SSLError) as exc:
        raise ImapUnavailable(f"the IMAP server did not answer: {_describe(exc)}") from exc
    except IMAPClientError as exc:
        raise ImapUnavailable(f"unexpected answer from the IMAP server: {exc}") from exc
    finally:
        _close_quietly(client)


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
