"""Password hashes in the formats Dovecot reads, with their ``{SCHEME}`` prefix, and the policy for new ones."""

from __future__ import annotations

from passlib.hash import argon2
from passlib.hash import bcrypt
from passlib.hash import sha512_crypt
from zxcvbn import zxcvbn

from .i18n import _
from .i18n import _l

# 5,000 rounds is Dovecot's own default: passlib's default (656,000) makes a hash
# that overflows the guide's VARCHAR(106) and costs Dovecot ~0.5 s per login.
SHA512_CRYPT_ROUNDS = 5000
# bcrypt reads 72 bytes at most; Dovecot's crypt() silently ignores the rest.
BCRYPT_MAX_BYTES = 72

_HASHERS = {
    "SHA512-CRYPT": sha512_crypt.using(rounds=SHA512_CRYPT_ROUNDS),
    "BLF-CRYPT": bcrypt.using(rounds=10, ident="2y"),
    # Dovecot verifies Argon2 with libsodium, which only accepts parallelism 1.
    "ARGON2ID": argon2.using(type="ID", memory_cost=65536, time_cost=3, parallelism=1),
}

SCHEMES = tuple(_HASHERS)

# zxcvbn refuses longer input; 72 characters of a passphrase say enough about it.
_STRENGTH_SAMPLE = 72


def _secret_for(scheme: str, password: str) -> str | bytes:
    if scheme == "BLF-CRYPT":
        return password.encode("utf-8")[:BCRYPT_MAX_BYTES]
    return password


def hash_password(password: str, scheme: str = "SHA512-CRYPT") -> str:
    """Return ``{SCHEME}hash`` for the password, as Dovecot's passdb expects it."""
    try:
        hasher = _HASHERS[scheme]
    except KeyError:
        raise ValueError(f"unsupported password scheme {scheme!r}; use one of {', '.join(SCHEMES)}") from None
    return "{%s}%s" % (scheme, hasher.hash(_secret_for(scheme, password)))


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
    try:
        return hasher.verify(_secret_for(scheme, password), digest)
    except ValueError:  # not a hash of that scheme at all
        return False


def policy_problems(
    password: str, *, address: str, current: str | None, min_length: int, max_length: int, min_score: int
) -> list[str]:
    """Return what is wrong with a proposed new password, in words for its owner (empty when fine)."""
    problems = []
    if len(password) < min_length:
        problems.append(_("Use at least %(count)s characters.", count=min_length))
    if len(password) > max_length:
        problems.append(_("Use at most %(count)s characters.", count=max_length))
    if "\x00" in password:
        problems.append(_("The password cannot contain a NUL character."))
    if problems:
        return problems
    lowered = password.lower()
    if lowered == address.lower() or lowered == address.partition("@")[0].lower():
        problems.append(_("The password must not be your address."))
    if current is not None and password == current:
        problems.append(_("The new password must differ from the current one."))
    if problems:
        return problems
    result = zxcvbn(password[:_STRENGTH_SAMPLE], user_inputs=[address, address.partition("@")[0]])
    if result["score"] < min_score:
        advice = " ".join(_(text) for text in filter(  # translated: see _STRENGTH_ADVICE
            None, [result["feedback"].get("warning")] + result["feedback"].get("suggestions", [])))
        problems.append(_("This password is too easy to guess. %(advice)s", advice=advice).strip())
    return problems


# zxcvbn writes its advice in English (through the standard gettext, not the portal's catalog). Its texts are
# listed here for the catalog and translated when shown; a text a later zxcvbn adds is shown as it comes.
_STRENGTH_ADVICE = (
    _l('Add another word or two. Uncommon words are better.'),
    _l("Capitalization doesn't help very much."),
    _l("Reversed words aren't much harder to guess."),
    _l("Predictable substitutions like '@' instead of 'a' don't help very much."),
    _l('Use a few words, avoid common phrases.'),
    _l('No need for symbols, digits, or uppercase letters.'),
    _l('Straight rows of keys are easy to guess.'),
    _l('Short keyboard patterns are easy to guess.'),
    _l('This is a top-10 common password.'),
    _l('This is similar to a commonly used password.'),
    _l('A word by itself is easy to guess.'),
    _l('All-uppercase is almost as easy to guess as all-lowercase.'),
    _l('Use a longer keyboard pattern with more turns.'),
    _l('Repeats like "aaa" are easy to guess.'),
    _l('Repeats like "abcabcabc" are only slightly harder to guess than "abc".'),
    _l('This is a top-100 common password.'),
    _l('This is a very common password.'),
    _l('Names and surnames by themselves are easy to guess.'),
    _l('Common names and surnames are easy to guess.'),
    _l('Avoid repeated words and characters.'),
    _l('Sequences like "abc" or "6543" are easy to guess.'),
    _l('Avoid sequences.'),
    _l('Recent years are easy to guess.'),
    _l('Dates are often easy to guess.'),
    _l('Avoid recent years.'),
    _l('Avoid years that are associated with you.'),
    _l('Avoid dates and years that are associated with you.'),
)


# No 0/o, 1/l/i: a generated password is often read out over the phone.
_READABLE = "abcdefghjkmnpqrstuvwxyz23456789"


def generate_password(groups: int = 4, group_length: int = 5) -> str:
    """Return a random password easy to read out, such as ``k7rmx-2qbzn-...`` (about 99 bits by default)."""
    import secrets

    return "-".join(
        "".join(secrets.choice(_READABLE) for _ in range(group_length)) for _ in range(groups)
    )


def configured_policy_problems(config, password: str, *, address: str, current: str | None = None) -> list[str]:
    """``policy_problems`` with the limits of the portal's configuration."""
    return policy_problems(
        password, address=address, current=current, min_length=int(config["PASSWORD_MIN_LENGTH"]),
        max_length=int(config["PASSWORD_MAX_LENGTH"]), min_score=int(config["PASSWORD_MIN_SCORE"]),
    )


def stored_hash_problem(stored: str) -> str | None:
    """Why Dovecot could not read ``stored`` as a password hash of ours (None: it can)."""
    scheme, digest = "SHA512-CRYPT", stored
    if stored.startswith("{"):
        # Not "_": that name is the translation function here.
        scheme, _brace, digest = stored[1:].partition("}")
    hasher = _HASHERS.get(scheme)
    if hasher is None:
        return _("the scheme %(scheme)s is not one of %(schemes)s", scheme=repr(scheme), schemes=", ".join(SCHEMES))
    if not digest or not hasher.identify(digest):
        return _("this is not a %(scheme)s hash", scheme=scheme)
    if len(stored) > 255:
        return _("the hash is longer than 255 characters")
    return None


def hash_for_import(item: tuple[str, str, str, dict]) -> tuple[str | None, list[str]]:
    """Check and hash one imported plain password: (address, password, scheme, policy limits) -> (hash, problems).

    Runs in worker processes, so that a bulk import hashes on every core."""
    address, password, scheme, limits = item
    problems = policy_problems(password, address=address, current=None, **limits)
    if problems:
        return None, problems
    return hash_password(password, scheme), []
