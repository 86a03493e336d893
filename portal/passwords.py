"""Password hashes in the formats Dovecot reads, with their ``{SCHEME}`` prefix."""

from __future__ import annotations

from passlib.hash import sha512_crypt

# 5,000 rounds is Dovecot's own default: passlib's default (656,000) makes a hash
# that overflows the guide's VARCHAR(106) and costs Dovecot ~0.5 s per login.
SHA512_CRYPT_ROUNDS = 5000

_HASHERS = {
    "SHA512-CRYPT": sha512_crypt.using(rounds=SHA512_CRYPT_ROUNDS),
}

SCHEMES = tuple(_HASHERS)


def hash_password(password: str, scheme: str = "SHA512-CRYPT") -> str:
    """Return ``{SCHEME}hash`` for the password, as Dovecot's passdb expects it."""
    try:
        hasher = _HASHERS[scheme]
    except KeyError:
        raise ValueError(f"unsupported password scheme {scheme!r}; use one of {', '.join(SCHEMES)}") from None
    return "{%s}%s" % (scheme, hasher.hash(password))


def verify_password(password: str, stored: str) -> bool:
    """Check a password against a stored hash, with or without a ``{SCHEME}`` prefix."""
    scheme = "SHA512-CRYPT"  # Dovecot's default_pass_scheme for unprefixed hashes
    digest = stored
    if stored.startswith("{"):
        scheme, _, digest = stored[1:].partition("}")
        scheme = scheme.upper()
    hasher = _HASHERS.get(scheme)
    if hasher is None:
        return False
    return hasher.verify(password, digest)
