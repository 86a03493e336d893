"""portal/imap.py against the real Dovecot, in each of the three transport security modes."""

from __future__ import annotations

import os
import socket

import pytest

from portal import imap
from tests.conftest import new_client_ip
from tests.mail import make_mailbox

# Touches Dovecot or Postfix: scripts/test runs it on the other Debian release too.
pytestmark = pytest.mark.mail_server

ADDRESS = "nodelay@portal.example"
PASSWORD = "Nagle would delay this one 7"
MODES = ["plain", "starttls", "tls"]


def config_for(app_factory, mail_stack, security: str, **overrides):
    """The portal's whole, validated configuration for one security mode."""
    port = mail_stack.imaps_port if security == "tls" else mail_stack.imap_port
    settings = {"IMAP_SECURITY": security, "IMAP_PORT": port, "IMAP_TLS_CA_FILE": str(mail_stack.tls_cert)}
    return app_factory(**{**settings, **overrides}).config


@pytest.mark.parametrize("security", MODES)
def test_every_connection_sends_without_nagle_delay(app_factory, mail_stack, security):
    """TCP_NODELAY is on the socket that carries the password, after STARTTLS and under implicit TLS too."""
    client = imap.connect_from_config(config_for(app_factory, mail_stack, security))
    try:
        sock = client.socket()
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert (security == "plain") == (sock.__class__ is socket.socket)  # the TLS modes really are TLS
    finally:
        client.logout()


@pytest.mark.parametrize("security", MODES)
def test_password_verdicts_in_every_mode(db, app_factory, mail_stack, security):
    make_mailbox(db, ADDRESS, PASSWORD)
    config = config_for(app_factory, mail_stack, security)
    # A client address each, so that Dovecot's penalty for one failure does not slow the next check.
    assert imap.authenticate(config, ADDRESS, PASSWORD, new_client_ip()) is True
    assert imap.authenticate(config, ADDRESS, PASSWORD + "x", new_client_ip()) is False
    assert imap.authenticate(config, "nobody@portal.example", PASSWORD, new_client_ip()) is False


def test_a_failed_starttls_closes_the_socket(app_factory, mail_stack):
    """A certificate STARTTLS cannot verify fails as unavailable, and leaves no socket behind."""
    config = config_for(app_factory, mail_stack, "starttls", IMAP_TLS_CA_FILE="")  # the system CAs do not know it
    before = open_descriptors()
    with pytest.raises(imap.ImapUnavailable) as raised:
        imap.connect_from_config(config)
    # The traceback keeps connect()'s frame, and with it the client, alive: its socket must be closed all the same.
    assert raised.traceback
    assert open_descriptors() == before


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))
