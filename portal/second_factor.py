"""The mechanics of second factors: TOTP codes and their QR code, recovery codes, and WebAuthn ceremonies.

Nothing here touches the database or decides who may do what (that is
``rules/second_factors.py``); these are the libraries behind it: pyotp for
RFC 6238, segno for a QR code drawn as inline SVG (no script, no outside
service), and py_webauthn for the passkey ceremonies.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from urllib.parse import urlsplit

import pyotp
import segno

# A TOTP code is accepted in its own 30-second step and one step either side (clock drift), once.
TOTP_DRIFT_STEPS = 1
ISSUER = "Mail portal"
RECOVERY_CODE_COUNT = 10
# 16 characters of base32: 80 random bits, so a SHA-256 of the code is as good as any slower hash.
_RECOVERY_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"


def new_totp_secret() -> str:
    """A new random TOTP secret (base32, 160 bits)."""
    return pyotp.random_base32(32)


def totp_uri(secret: str, address: str, issuer: str = ISSUER) -> str:
    """The otpauth:// URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=address, issuer_name=issuer)


def qr_svg(text: str) -> str:
    """An inline SVG of a QR code for ``text`` (a title, no script, no style element)."""
    svg = segno.make(text, error="m").svg_inline(scale=5, dark="#000", light="#fff", svgclass="qr-code",
                                                 title="QR code")
    return svg.replace("<svg ", '<svg role="img" ', 1)  # named by its title for screen readers


def totp_step(secret: str, code: str, after_step: int, now: float | None = None) -> int | None:
    """The 30-second step whose code ``code`` is, if it is newer than ``after_step`` (a code is used once);
    else None."""
    code = "".join(code.split())
    if len(code) != 6 or not code.isascii() or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    now = time.time() if now is None else now
    current = int(now // totp.interval)
    for step in range(current - TOTP_DRIFT_STEPS, current + TOTP_DRIFT_STEPS + 1):
        if step > after_step and secrets.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def new_recovery_codes() -> list[str]:
    """Ten new recovery codes, each xxxx-xxxx-xxxx-xxxx."""
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(16))
        codes.append("-".join(raw[i:i + 4] for i in range(0, 16, 4)))
    return codes


def recovery_code_hash(mailbox_id: int, code: str) -> bytes:
    """What the database keeps of a recovery code: the SHA-256 of the mailbox id and the code as typed, tidied."""
    tidy = "".join(ch for ch in code.lower() if ch.isalnum())
    return hashlib.sha256(f"{mailbox_id}:{tidy}".encode()).digest()


def looks_like_recovery_code(text: str) -> bool:
    """Whether what the user typed has the shape of a recovery code rather than a TOTP code."""
    tidy = "".join(ch for ch in text.lower() if ch.isalnum())
    return len(tidy) == 16 and all(ch in _RECOVERY_ALPHABET for ch in tidy)


# --- WebAuthn -------------------------------------------------------------------------------------------------


def relying_party(public_url: str, host_url: str) -> tuple[str, str]:
    """(RP id, origin) of the portal: from its public address when set, else from the request's.

    The origin a browser signs must equal this, which is what makes a passkey useless on a
    look-alike site; behind a proxy, set public_url so the Host header does not decide it."""
    parts = urlsplit(public_url or host_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    return parts.hostname or "localhost", origin


def registration_options(rp_id: str, user_handle: bytes, address: str, existing: list[bytes]) -> tuple[str, bytes]:
    """(options as JSON for navigator.credentials.create, the challenge to keep) for a new passkey."""
    from webauthn import generate_registration_options
    from webauthn import options_to_json
    from webauthn.helpers.structs import AuthenticatorSelectionCriteria
    from webauthn.helpers.structs import PublicKeyCredentialDescriptor
    from webauthn.helpers.structs import ResidentKeyRequirement
    from webauthn.helpers.structs import UserVerificationRequirement

    options = generate_registration_options(
        rp_id=rp_id, rp_name=ISSUER, user_id=user_handle, user_name=address, user_display_name=address,
        exclude_credentials=[PublicKeyCredentialDescriptor(id=cred) for cred in existing],
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.DISCOURAGED,
            user_verification=UserVerificationRequirement.PREFERRED),
    )
    return options_to_json(options), options.challenge


def verify_registration(response_json: str, challenge: bytes, rp_id: str, origin: str) -> tuple[bytes, bytes, int]:
    """(credential id, public key, sign count) of a checked registration; raises ValueError when it does not hold."""
    from webauthn import verify_registration_response

    try:
        verified = verify_registration_response(credential=response_json, expected_challenge=challenge,
                                                expected_rp_id=rp_id, expected_origin=origin)
    except Exception as exc:  # the library raises several kinds for a bad or forged response
        raise ValueError(type(exc).__name__) from None
    return verified.credential_id, verified.credential_public_key, verified.sign_count


def authentication_options(rp_id: str, credentials: list[bytes]) -> tuple[str, bytes]:
    """(options as JSON for navigator.credentials.get, the challenge to keep) for signing in with a passkey."""
    from webauthn import generate_authentication_options
    from webauthn import options_to_json
    from webauthn.helpers.structs import PublicKeyCredentialDescriptor
    from webauthn.helpers.structs import UserVerificationRequirement

    options = generate_authentication_options(
        rp_id=rp_id, allow_credentials=[PublicKeyCredentialDescriptor(id=cred) for cred in credentials],
        user_verification=UserVerificationRequirement.PREFERRED)
    return options_to_json(options), options.challenge


def credential_id_of(response_json: str) -> bytes | None:
    """The credential id a sign-in response names (None: unreadable)."""
    import json

    from webauthn.helpers import base64url_to_bytes

    try:
        raw = json.loads(response_json).get("rawId") or ""
        return base64url_to_bytes(raw) if isinstance(raw, str) and raw else None
    except (ValueError, TypeError, AttributeError):
        return None


def verify_authentication(response_json: str, challenge: bytes, rp_id: str, origin: str, public_key: bytes,
                          sign_count: int) -> int:
    """The new sign count of a checked sign-in with a passkey; raises ValueError when it does not hold."""
    from webauthn import verify_authentication_response

    try:
        verified = verify_authentication_response(
            credential=response_json, expected_challenge=challenge, expected_rp_id=rp_id, expected_origin=origin,
            credential_public_key=public_key, credential_current_sign_count=sign_count)
    except Exception as exc:  # the library raises several kinds for a bad or forged response
        raise ValueError(type(exc).__name__) from None
    return verified.new_sign_count
