"""The browser's address, as far as the portal can trust it."""

from __future__ import annotations

import ipaddress
import logging

from flask import request

log = logging.getLogger(__name__)


def client_address() -> str | None:
    """Return the request's client IP address in canonical form, or None when there is none.

    ``request.remote_addr`` is the TCP peer, or what ProxyFix took from
    X-Forwarded-For when TRUSTED_PROXY_COUNT says to; behind a proxy on a unix
    socket it may be empty.
    """
    raw = request.remote_addr or ""
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        if raw:
            log.warning("client address %r is not an IP address; treating it as unknown", raw[:64])
        return None


def throttle_key(address: str | None) -> str | None:
    """Return the key failed sign-ins are counted under: the IPv4 address, or the IPv6 /64."""
    if address is None:
        return None
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    # One IPv6 client usually has a whole /64 to pick addresses from.
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))
