"""SQL for second factors (portal_totp, portal_webauthn_credentials, portal_recovery_codes) and the mail-client
setting of portal_mailbox_settings."""

from __future__ import annotations

_STATE = """
SELECT (SELECT t.confirmed_at IS NOT NULL FROM portal_totp t WHERE t.mailbox_id = %(id)s) AS totp,
       (SELECT count(*) FROM portal_webauthn_credentials w WHERE w.mailbox_id = %(id)s) AS passkeys,
       (SELECT count(*) FROM portal_recovery_codes r WHERE r.mailbox_id = %(id)s AND r.used_at IS NULL)
           AS recovery_codes,
       coalesce((SELECT s.mail_clients_use_app_passwords FROM portal_mailbox_settings s
                  WHERE s.mailbox_id = %(id)s), false) AS mail_clients_use_app_passwords,
       (SELECT d.require_app_passwords FROM virtual_users u JOIN virtual_domains d ON d.id = u.domain_id
         WHERE u.id = %(id)s) AS domain_requires_app_passwords,
       (SELECT s.second_factor_removed_at FROM portal_mailbox_settings s WHERE s.mailbox_id = %(id)s)
           AS removed_at,
       (SELECT s.second_factor_removed_by FROM portal_mailbox_settings s WHERE s.mailbox_id = %(id)s)
           AS removed_by
"""


def state(conn, mailbox_id: int) -> dict:
    """The mailbox's second factors (a confirmed TOTP, passkeys, unused recovery codes) and mail-client setting."""
    row = conn.execute(_STATE, {"id": mailbox_id}).fetchone()
    return {**row, "totp": bool(row["totp"])}


_TOTP = "SELECT * FROM portal_totp WHERE mailbox_id = %s"
_TOTP_LOCKED = "SELECT * FROM portal_totp WHERE mailbox_id = %s FOR UPDATE"


def totp_of(conn, mailbox_id: int, *, lock: bool = False) -> dict | None:
    """The mailbox's TOTP row (confirmed or being enrolled)."""
    statement = _TOTP_LOCKED if lock else _TOTP
    return conn.execute(statement, (mailbox_id,)).fetchone()


def start_totp(conn, mailbox_id: int, secret: str) -> None:
    """Keep a new, unconfirmed TOTP secret (replacing an unconfirmed one)."""
    conn.execute(
        "INSERT INTO portal_totp (mailbox_id, secret) VALUES (%s, %s)"
        " ON CONFLICT (mailbox_id) DO UPDATE SET secret = excluded.secret, confirmed_at = NULL, last_step = 0"
        " WHERE portal_totp.confirmed_at IS NULL",
        (mailbox_id, secret),
    )


def confirm_totp(conn, mailbox_id: int, step: int) -> None:
    """Mark the TOTP confirmed, its first code used."""
    conn.execute("UPDATE portal_totp SET confirmed_at = now(), last_step = %s WHERE mailbox_id = %s",
                 (step, mailbox_id))


def use_totp_step(conn, mailbox_id: int, step: int) -> bool:
    """Record a code's step as used; False if that step or a newer one was used already (a replay)."""
    return conn.execute("UPDATE portal_totp SET last_step = %s WHERE mailbox_id = %s AND last_step < %s"
                        " AND confirmed_at IS NOT NULL", (step, mailbox_id, step)).rowcount == 1


def delete_totp(conn, mailbox_id: int) -> int:
    """Forget the mailbox's TOTP; return how many rows went (0 or 1)."""
    return conn.execute("DELETE FROM portal_totp WHERE mailbox_id = %s", (mailbox_id,)).rowcount


def replace_recovery_codes(conn, mailbox_id: int, hashes: list[bytes]) -> None:
    """Replace the mailbox's recovery codes with new ones (given as hashes)."""
    conn.execute("DELETE FROM portal_recovery_codes WHERE mailbox_id = %s", (mailbox_id,))
    with conn.cursor() as cursor:
        cursor.executemany("INSERT INTO portal_recovery_codes (mailbox_id, code_sha256) VALUES (%s, %s)",
                           [(mailbox_id, digest) for digest in hashes])


def use_recovery_code(conn, mailbox_id: int, digest: bytes) -> bool:
    """Mark an unused recovery code used; False if there is no such unused code."""
    return conn.execute(
        "UPDATE portal_recovery_codes SET used_at = now()"
        " WHERE mailbox_id = %s AND code_sha256 = %s AND used_at IS NULL",
        (mailbox_id, digest),
    ).rowcount == 1


def delete_recovery_codes(conn, mailbox_id: int) -> int:
    """Forget the mailbox's recovery codes."""
    return conn.execute("DELETE FROM portal_recovery_codes WHERE mailbox_id = %s", (mailbox_id,)).rowcount


def passkeys_of(conn, mailbox_id: int) -> list[dict]:
    """The mailbox's passkeys, oldest first."""
    return conn.execute(
        "SELECT id, credential_id, public_key, sign_count, name, created_at, last_used_at"
        "  FROM portal_webauthn_credentials WHERE mailbox_id = %s ORDER BY created_at, id",
        (mailbox_id,),
    ).fetchall()


def add_passkey(conn, mailbox_id: int, credential_id: bytes, public_key: bytes, sign_count: int, name: str) -> int:
    """Keep a new passkey; return its id."""
    return conn.execute(
        "INSERT INTO portal_webauthn_credentials (mailbox_id, credential_id, public_key, sign_count, name)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (mailbox_id, credential_id, public_key, sign_count, name),
    ).fetchone()["id"]


def passkey_by_credential(conn, mailbox_id: int, credential_id: bytes) -> dict | None:
    """One of the mailbox's passkeys by its credential id, locked."""
    return conn.execute(
        "SELECT * FROM portal_webauthn_credentials WHERE mailbox_id = %s AND credential_id = %s FOR UPDATE",
        (mailbox_id, credential_id),
    ).fetchone()


def credential_taken(conn, credential_id: bytes) -> bool:
    """Whether a passkey with this credential id is kept already (for any mailbox)."""
    return conn.execute("SELECT 1 FROM portal_webauthn_credentials WHERE credential_id = %s",
                        (credential_id,)).fetchone() is not None


def use_passkey(conn, passkey_id: int, sign_count: int) -> None:
    """Record a sign-in with a passkey and its new sign count."""
    conn.execute("UPDATE portal_webauthn_credentials SET sign_count = %s, last_used_at = now() WHERE id = %s",
                 (sign_count, passkey_id))


def delete_passkey(conn, mailbox_id: int, passkey_id: int) -> dict | None:
    """Forget one of the mailbox's passkeys; return it (None: no such passkey)."""
    return conn.execute(
        "DELETE FROM portal_webauthn_credentials WHERE mailbox_id = %s AND id = %s RETURNING id, name",
        (mailbox_id, passkey_id),
    ).fetchone()


def delete_passkeys(conn, mailbox_id: int) -> int:
    """Forget every passkey of the mailbox."""
    return conn.execute("DELETE FROM portal_webauthn_credentials WHERE mailbox_id = %s", (mailbox_id,)).rowcount


_SET_MAIL_CLIENTS = """
INSERT INTO portal_mailbox_settings (mailbox_id, mail_clients_use_app_passwords) VALUES (%s, %s)
ON CONFLICT (mailbox_id) DO UPDATE SET mail_clients_use_app_passwords = excluded.mail_clients_use_app_passwords
"""


def set_mail_clients_use_app_passwords(conn, mailbox_id: int, on: bool) -> None:
    """Whether the mailbox's mail clients must use app passwords (Dovecot refuses them the main password)."""
    conn.execute(_SET_MAIL_CLIENTS, (mailbox_id, on))


_MARK_REMOVED = """
INSERT INTO portal_mailbox_settings (mailbox_id, second_factor_removed_at, second_factor_removed_by)
VALUES (%s, now(), %s)
ON CONFLICT (mailbox_id) DO UPDATE SET second_factor_removed_at = now(),
                                       second_factor_removed_by = excluded.second_factor_removed_by
"""


def mark_removed_by_other(conn, mailbox_id: int, role: str | None) -> None:
    """Remember that someone else removed the mailbox's second factors (shown on its dashboard); None forgets it."""
    if role is None:
        conn.execute("UPDATE portal_mailbox_settings SET second_factor_removed_at = NULL,"
                     " second_factor_removed_by = NULL WHERE mailbox_id = %s", (mailbox_id,))
    else:
        conn.execute(_MARK_REMOVED, (mailbox_id, role))


def set_domain_requires_app_passwords(conn, domain_id: int, on: bool) -> bool:
    """Whether every mailbox of the domain must use app passwords in mail clients; False if unchanged."""
    return conn.execute("UPDATE virtual_domains SET require_app_passwords = %s WHERE id = %s"
                        " AND require_app_passwords IS DISTINCT FROM %s", (on, domain_id, on)).rowcount == 1


def use_challenge(conn, digest: bytes) -> bool:
    """Mark a passkey challenge answered; False if it was already (a replayed answer). Forgets those over an hour
    old (a challenge is good for minutes)."""
    conn.execute("DELETE FROM portal_used_challenges WHERE used_at < now() - interval '1 hour'")
    return conn.execute("INSERT INTO portal_used_challenges (challenge_sha256) VALUES (%s) ON CONFLICT DO NOTHING",
                        (digest,)).rowcount == 1
