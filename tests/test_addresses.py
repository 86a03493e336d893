"""One canonical form for every address and domain."""

from __future__ import annotations

import pytest

from portal.addresses import InvalidAddress
from portal.addresses import canonical_address
from portal.addresses import canonical_domain


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("Alice@Example.COM", "alice@example.com"),
        ("  alice@example.com \t", "alice@example.com"),
        ("alice@example.com.", "alice@example.com"),
        ("o'brien+tag@example.com", "o'brien+tag@example.com"),
        ("user@bücher.example", "user@xn--bcher-kva.example"),
        ("user@BÜCHER.example", "user@xn--bcher-kva.example"),
        # IDNA 2008, not the stdlib's IDNA 2003 (which maps ß to ss).
        ("user@straße.de", "user@xn--strae-oqa.de"),
        ("user@xn--bcher-kva.example", "user@xn--bcher-kva.example"),
    ],
)
def test_canonical_address(raw, canonical):
    assert canonical_address(raw) == canonical


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "alice",
        "@example.com",
        "alice@",
        "alice@localhost",
        "alice@example..com",
        "al ice@example.com",
        "alice\r\n@example.com",
        "alice@example.com\r\nA1 LOGOUT",
        "alice@example.com\r\n",
        "alice\x00@example.com",
        "ali\u200bce@example.com",  # zero-width space
        "\u212aing@example.com",  # Kelvin sign lower-cases to k: refused, not folded
        "ﬀ@example.com",
        "a" * 65 + "@example.com",
        "a@" + "b" * 250 + ".com",
        "x" * 5000,
        "alice@-example.com",
        '"quoted"@example.com',
    ],
)
def test_invalid_addresses_are_refused(raw):
    with pytest.raises(InvalidAddress):
        canonical_address(raw)


def test_domain_forms_are_one_identity():
    assert canonical_domain("Bücher.Example") == canonical_domain("xn--bcher-kva.example")
    assert canonical_domain("EXAMPLE.com.") == "example.com"
