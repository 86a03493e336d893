"""Configuration: defaults, then a TOML file, then ``PORTAL_*`` environment variables."""

from __future__ import annotations

import os
import re
import tomllib

# The one placeholder secret; refused outside debug and testing.
DEV_SECRET_KEY = "dev-only-insecure-secret-key"  # noqa: S105 - refused by validate()

DEFAULTS = {
    "SECRET_KEY": DEV_SECRET_KEY,
    # A libpq URL, e.g. postgresql://portal:secret@127.0.0.1:5432/mailserver
    "DATABASE_URL": "postgresql:///mailserver",
    "DB_POOL_MIN_SIZE": 1,
    # Per worker process; sign-ins give theirs back while Dovecot checks the password.
    "DB_POOL_MAX_SIZE": 8,
    # Seconds a request waits for a pooled connection before answering 503.
    "DB_POOL_TIMEOUT": 3.0,
    "DB_CONNECT_TIMEOUT": 3,
    # Milliseconds; a query slower than this is cancelled by PostgreSQL.
    "DB_STATEMENT_TIMEOUT": 5000,
    "IMAP_HOST": "127.0.0.1",
    "IMAP_PORT": 143,
    "IMAP_SECURITY": "starttls",
    # Seconds for connecting to Dovecot and for each of its answers but one:
    "IMAP_TIMEOUT": 5.0,
    # the answer to AUTHENTICATE, which Dovecot itself delays after failures from the
    # same client (auth_failure_delay 2 s plus an auth penalty of up to 15 s).
    "IMAP_AUTH_TIMEOUT": 20.0,
    # Whether to verify Dovecot's TLS certificate (turn off only for a self-signed test setup).
    "IMAP_TLS_VERIFY": True,
    # A CA bundle or certificate to trust for Dovecot instead of the system's (empty: system CAs).
    "IMAP_TLS_CA_FILE": "",
    # Dovecot's doveadm HTTP API, to end open IMAP/POP3 sessions when a mailbox or
    # domain is disabled, a mailbox deleted or given a new password. Empty: off.
    # e.g. http://127.0.0.1:8080/doveadm/v1; the key is Dovecot's doveadm_api_key.
    "DOVEADM_URL": "",
    "DOVEADM_API_KEY": "",
    "DOVEADM_TIMEOUT": 3.0,
    # Send the session cookie over HTTPS only. Turn off only for plain-HTTP demos on loopback.
    "COOKIE_SECURE": True,
    # Seconds each check of /healthz may take.
    "HEALTH_TIMEOUT": 1.5,
    # Seconds of inactivity, and seconds in all, after which a session ends.
    "SESSION_IDLE_TIMEOUT": 1800,
    "SESSION_ABSOLUTE_TIMEOUT": 43200,
    # Failed sign-ins allowed per account and per client address within the window
    # (seconds) before further attempts are refused for the lockout (seconds).
    "LOGIN_ACCOUNT_MAX_FAILURES": 5,
    "LOGIN_CLIENT_MAX_FAILURES": 20,
    # Failed sign-ins of one account from all client addresses together (a distributed guess).
    "LOGIN_ACCOUNT_ALL_CLIENTS_MAX_FAILURES": 50,
    "LOGIN_FAILURE_WINDOW": 900,
    "LOGIN_LOCKOUT": 900,
    # Sign-ins waiting for Dovecot's verdict at once: per client address (or IPv6
    # /64) across all workers, and per worker process. Dovecot answers failures
    # only after seconds; past these caps a sign-in is refused at once (429 or
    # 503) instead of tying up a worker thread. Keep the per-worker cap below
    # gunicorn's threads (config/gunicorn.conf.py: 64), so pages stay served, and
    # workers x cap below Dovecot's imap-login process_limit (100 by default).
    "LOGIN_CLIENT_MAX_IN_FLIGHT": 1,
    "LOGIN_WORKER_MAX_IN_FLIGHT": 48,
    # The provisioning API (/api/v1): calls per token and minute (429 past it, shared
    # by every worker), and the largest request body in bytes (413 past it).
    "API_CALLS_PER_MINUTE": 600,
    "API_MAX_BODY_BYTES": 65536,
    # Reverse proxies in front of the portal whose X-Forwarded-For is believed.
    # 0 means none: the client address is the TCP peer and the header is ignored.
    "TRUSTED_PROXY_COUNT": 0,
    # Password policy for new passwords.
    "PASSWORD_MIN_LENGTH": 12,
    "PASSWORD_MAX_LENGTH": 1024,
    # zxcvbn score from 0 (guessable) to 4; new passwords need at least this.
    "PASSWORD_MIN_SCORE": 3,
    # Hash scheme for new passwords: SHA512-CRYPT, BLF-CRYPT or ARGON2ID.
    "PASSWORD_SCHEME": "SHA512-CRYPT",
    # Where Dovecot keeps maildirs (mail_location maildir:<root>/%d/%n), for the
    # removal queue of deleted mailboxes; and how long their mail is kept.
    "MAIL_ROOT": "/var/mail/vhosts",
    "MAILBOX_PURGE_GRACE_DAYS": 30,
    # Forwarding destinations a user may set for their own address.
    "FORWARD_MAX_DESTINATIONS": 10,
    # Local parts nobody but a superadmin may take as an alias.
    # admin and administrator too: certificate authorities send domain validation mail there.
    "RESERVED_LOCAL_PARTS": [
        "postmaster", "abuse", "hostmaster", "webmaster", "mailer-daemon", "root", "admin", "administrator",
    ],
    # Postfix's recipient_delimiter (Debian's default main.cf: "+"); personal aliases may not contain it.
    "RECIPIENT_DELIMITER": "+",
    # Pages follow the browser's Accept-Language (Korean or English) and the switch on every
    # page; this language is used when the browser asks for neither.
    "DEFAULT_LANGUAGE": "en",
    # The portal's own address as users reach it (https://mail.example.com/portal), the only base of the
    # links in its mail: never the request's Host header. Empty: no links, so no self-service recovery.
    "PUBLIC_URL": "",
    # Notices to users (password or forwarding changed, recovery links, quota warnings) go out from this
    # address through this SMTP server, normally the local Postfix. Empty NOTICE_FROM: the portal sends none.
    "NOTICE_FROM": "",
    "NOTICE_SMTP_HOST": "127.0.0.1",
    "NOTICE_SMTP_PORT": 25,
    # Seconds for each step of a send; a failed notice is kept and retried ("flask notices send").
    "NOTICE_SMTP_TIMEOUT": 5.0,
    # Roles whose holders must sign in with a second factor (TOTP app or passkey) and are taken to enrol one
    # straight after their password until they have: any of superadmin, domain_admin, helpdesk.
    "SECOND_FACTOR_REQUIRED_ROLES": ["superadmin", "domain_admin", "helpdesk"],
    # Logs: "json" (one object a line, for journald and log shippers) or "text"; and the level.
    "LOG_FORMAT": "json",
    "LOG_LEVEL": "INFO",
}

LOG_FORMATS = ("json", "text")

IMAP_SECURITY_CHOICES = ("plain", "starttls", "tls")


class ConfigError(Exception):
    """The configuration is unusable; the message says what to fix."""


def load_toml(path: str) -> dict:
    """Read a TOML config file; keys are case-insensitive and must be known."""
    try:
        with open(path, "rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"PORTAL_CONFIG names {path!r}, which does not exist") from None
    except OSError as exc:  # e.g. the purge service's user reading the portal's own file
        raise ConfigError(f"PORTAL_CONFIG names {path!r}, which this user (uid {os.getuid()}) cannot read:"
                          f" {exc.strerror}. The purge service reads its own file, purge.toml (README, Production)"
                          ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    values = {}
    for key, value in raw.items():
        name = key.upper()
        if name not in DEFAULTS:
            raise ConfigError(f"{path}: unknown setting {key!r} (see config/portal.example.toml)")
        values[name] = value
    return values


def load_environment(environ) -> dict:
    """Read ``PORTAL_<KEY>`` variables for every known key, converting to the default's type."""
    values = {}
    for name, default in DEFAULTS.items():
        raw = environ.get(f"PORTAL_{name}")
        if raw is None:
            continue
        values[name] = _convert(name, raw, default)
    return values


def _convert(name: str, raw: str, default):
    if isinstance(default, list):
        return [item.strip() for item in raw.split(",") if item.strip()]
    if isinstance(default, bool):
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"PORTAL_{name} must be true or false, not {raw!r}")
    if isinstance(default, (int, float)):
        try:
            return type(default)(raw)
        except ValueError:
            raise ConfigError(f"PORTAL_{name} must be a number, not {raw!r}") from None
    return raw


def layered_config(environ=None, test_config=None) -> dict:
    """Return the settings: defaults, then the TOML file, then the environment, then test values."""
    environ = os.environ if environ is None else environ
    values = dict(DEFAULTS)
    config_path = environ.get("PORTAL_CONFIG")
    if config_path:
        values.update(load_toml(config_path))
    values.update(load_environment(environ))
    if test_config:
        values.update(test_config)
    return values


def validate(values: dict, *, debug: bool, testing: bool) -> None:
    """Refuse settings the portal cannot run safely with."""
    if values["IMAP_SECURITY"] not in IMAP_SECURITY_CHOICES:
        raise ConfigError(
            f"IMAP_SECURITY must be one of {', '.join(IMAP_SECURITY_CHOICES)}, not {values['IMAP_SECURITY']!r}"
        )
    from .passwords import SCHEMES

    if values["DEFAULT_LANGUAGE"] not in ("ko", "en"):
        raise ConfigError(f"DEFAULT_LANGUAGE must be ko or en, not {values['DEFAULT_LANGUAGE']!r}")
    if values["LOG_FORMAT"] not in LOG_FORMATS:
        raise ConfigError(f"LOG_FORMAT must be json or text, not {values['LOG_FORMAT']!r}")
    if str(values["LOG_LEVEL"]).upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {values['LOG_LEVEL']!r}")

    ca_file = values.get("IMAP_TLS_CA_FILE") or ""
    if ca_file and not os.access(ca_file, os.R_OK):
        raise ConfigError(f"IMAP_TLS_CA_FILE names {ca_file!r}, which cannot be read")
    if values["PASSWORD_SCHEME"] not in SCHEMES:
        raise ConfigError(f"PASSWORD_SCHEME must be one of {', '.join(SCHEMES)}, not {values['PASSWORD_SCHEME']!r}")
    if not 8 <= int(values["PASSWORD_MIN_LENGTH"]) <= int(values["PASSWORD_MAX_LENGTH"]) <= 1024:
        raise ConfigError(
            "PASSWORD_MIN_LENGTH must be at least 8 and at most PASSWORD_MAX_LENGTH, which may be at most 1024"
        )
    for name in ("LOGIN_ACCOUNT_MAX_FAILURES", "LOGIN_CLIENT_MAX_FAILURES", "LOGIN_ACCOUNT_ALL_CLIENTS_MAX_FAILURES",
                 "LOGIN_CLIENT_MAX_IN_FLIGHT", "LOGIN_WORKER_MAX_IN_FLIGHT", "SESSION_IDLE_TIMEOUT",
                 "SESSION_ABSOLUTE_TIMEOUT", "LOGIN_FAILURE_WINDOW", "LOGIN_LOCKOUT", "API_CALLS_PER_MINUTE",
                 "API_MAX_BODY_BYTES"):
        if int(values[name]) < 1:
            raise ConfigError(f"{name} must be a positive number")
    if int(values["FORWARD_MAX_DESTINATIONS"]) < 1:
        raise ConfigError("FORWARD_MAX_DESTINATIONS must be at least 1")
    reserved = values["RESERVED_LOCAL_PARTS"]
    if not isinstance(reserved, list) or not all(isinstance(r, str) and r == r.lower() for r in reserved):
        raise ConfigError("RESERVED_LOCAL_PARTS must be a list of lower-case local parts")
    required = values["SECOND_FACTOR_REQUIRED_ROLES"]
    if not isinstance(required, list) or not set(required) <= {"superadmin", "domain_admin", "helpdesk"}:
        raise ConfigError("SECOND_FACTOR_REQUIRED_ROLES must list some of superadmin, domain_admin, helpdesk")
    doveadm_url = str(values["DOVEADM_URL"] or "")
    if doveadm_url:
        if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", doveadm_url):
            raise ConfigError("DOVEADM_URL must be an http:// or https:// URL, e.g. http://127.0.0.1:8080/doveadm/v1")
        if not re.fullmatch(r"[A-Za-z0-9._~+/=-]{24,}", str(values["DOVEADM_API_KEY"] or "")):
            raise ConfigError("DOVEADM_API_KEY must be set with DOVEADM_URL: 24 or more letters, digits or ._~+/=-")
    if not 0 < float(values["DOVEADM_TIMEOUT"]) <= 30:
        raise ConfigError("DOVEADM_TIMEOUT must be more than 0 and at most 30 seconds")
    if int(values["TRUSTED_PROXY_COUNT"]) < 0:
        raise ConfigError("TRUSTED_PROXY_COUNT must be 0 or more")
    _validate_notices(values)
    if not str(values["DATABASE_URL"]).startswith(("postgresql:", "postgres:")):
        raise ConfigError("DATABASE_URL must be a libpq URL starting with postgresql://")
    if debug or testing:
        return
    secret = values.get("SECRET_KEY") or ""
    if not secret or secret == DEV_SECRET_KEY:
        raise ConfigError(
            "SECRET_KEY is not set. Set PORTAL_SECRET_KEY (or secret_key in the file named by "
            'PORTAL_CONFIG) to a long random value, e.g. python3 -c "import secrets; print(secrets.token_hex(32))"'
        )
    if len(secret) < 32:
        raise ConfigError("SECRET_KEY is too short: use at least 32 random characters")


def _validate_notices(values: dict) -> None:
    public_url = str(values["PUBLIC_URL"] or "")
    if public_url and not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?", public_url):
        raise ConfigError("PUBLIC_URL must be the portal's address, e.g. https://mail.example.com or"
                          " https://mail.example.com/portal (no query, no user name)")
    sender = str(values["NOTICE_FROM"] or "")
    if sender:
        from .addresses import InvalidAddress
        from .addresses import canonical_address

        try:
            canonical_address(sender)
        except InvalidAddress:
            raise ConfigError(f"NOTICE_FROM must be a plain address such as noreply@example.com, not {sender!r}"
                              ) from None
    if not 0 < int(values["NOTICE_SMTP_PORT"]) < 65536:
        raise ConfigError("NOTICE_SMTP_PORT must be a port number")
    if not 0 < float(values["NOTICE_SMTP_TIMEOUT"]) <= 60:
        raise ConfigError("NOTICE_SMTP_TIMEOUT must be more than 0 and at most 60 seconds")
