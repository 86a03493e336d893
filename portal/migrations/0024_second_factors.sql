-- Second factors for the portal's sign-in, and app passwords for mail clients (issue 18).

-- A TOTP authenticator (RFC 6238). The secret must be readable to check codes, so it is kept
-- as it is, like every TOTP server must; last_step is the newest 30-second step accepted,
-- so that a code is accepted only once. confirmed_at is NULL while the user is enrolling.
CREATE TABLE portal_totp (
    mailbox_id integer PRIMARY KEY REFERENCES virtual_users(id) ON DELETE CASCADE,
    secret text NOT NULL,
    confirmed_at timestamptz,
    last_step bigint NOT NULL DEFAULT 0
);

-- Passkeys and security keys (WebAuthn), as a second factor.
CREATE TABLE portal_webauthn_credentials (
    id serial PRIMARY KEY,
    mailbox_id integer NOT NULL REFERENCES virtual_users(id) ON DELETE CASCADE,
    credential_id bytea NOT NULL UNIQUE,
    public_key bytea NOT NULL,
    sign_count bigint NOT NULL DEFAULT 0,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 60),
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz
);
CREATE INDEX portal_webauthn_credentials_mailbox_idx ON portal_webauthn_credentials (mailbox_id);

-- One-time recovery codes: only the SHA-256 of mailbox id and code (80 random bits each).
CREATE TABLE portal_recovery_codes (
    mailbox_id integer NOT NULL REFERENCES virtual_users(id) ON DELETE CASCADE,
    code_sha256 bytea NOT NULL,
    used_at timestamptz,
    PRIMARY KEY (mailbox_id, code_sha256)
);

-- App passwords for mail clients. Dovecot checks them itself: each of a mailbox's app
-- passwords sits in one of a fixed number of slots, and Dovecot's passdb for slot N selects
-- at most one row (mailbox, slot N), so any hash scheme works and no part of what a client
-- typed ever reaches a query. services: which of imap, pop3, smtp (submission), sieve.
CREATE TABLE portal_app_passwords (
    id serial PRIMARY KEY,
    mailbox_id integer NOT NULL REFERENCES virtual_users(id) ON DELETE CASCADE,
    slot smallint NOT NULL CHECK (slot BETWEEN 1 AND 8),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 60),
    password text NOT NULL,
    services text[] NOT NULL CHECK (services <> '{}' AND services <@ ARRAY['imap', 'pop3', 'smtp', 'sieve']),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (mailbox_id, slot)
);

-- Mail clients may be kept off the main password (app passwords only): per mailbox, switched
-- on when its owner enrols a second factor, and per domain for every mailbox in it.
ALTER TABLE portal_mailbox_settings
    ADD COLUMN mail_clients_use_app_passwords boolean NOT NULL DEFAULT false,
    -- When someone else removed the user's second factors, and in which role: the dashboard says so.
    ADD COLUMN second_factor_removed_at timestamptz,
    ADD COLUMN second_factor_removed_by text;
ALTER TABLE virtual_domains ADD COLUMN require_app_passwords boolean NOT NULL DEFAULT false;

-- Wrong second-factor codes of one account, from every client, counted apart from passwords: a right
-- password clears the password counters, so it must not clear these (or whoever holds the password
-- could guess codes without end). Only a right second factor clears them.
ALTER TABLE portal_login_throttle DROP CONSTRAINT portal_login_throttle_kind_check;
ALTER TABLE portal_login_throttle ADD CONSTRAINT portal_login_throttle_kind_check
    CHECK (kind IN ('account', 'client', 'pair', 'second_factor'));

-- Passkey challenges answered already (the challenge travels in the signed session cookie, which a
-- copy could replay): each is accepted once. Kept an hour.
CREATE TABLE portal_used_challenges (
    challenge_sha256 bytea PRIMARY KEY,
    used_at timestamptz NOT NULL DEFAULT now()
);
