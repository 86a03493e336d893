-- The portal writes to its users: notices of security-relevant changes, links to a
-- recovery address, and quota warnings.

-- The language a user last used the portal in: their notices are written in it.
-- The recovery address counts only once a link sent to it was opened (verified_at).
CREATE TABLE portal_mailbox_settings (
    mailbox_id integer PRIMARY KEY REFERENCES virtual_users(id) ON DELETE CASCADE,
    language text NOT NULL DEFAULT 'en' CHECK (language IN ('en', 'ko')),
    recovery_address text,
    recovery_verified_at timestamptz,
    CHECK (recovery_verified_at IS NULL OR recovery_address IS NOT NULL)
);

-- Administrators may switch self-service recovery off for a domain.
ALTER TABLE virtual_domains ADD COLUMN allow_password_recovery boolean NOT NULL DEFAULT true;

-- Links sent by mail: to prove a recovery address ("verify") or to choose a new password
-- ("reset"). Only the token's SHA-256 is kept; a link is used once and expires.
CREATE TABLE portal_recovery_tokens (
    token_sha256 bytea PRIMARY KEY,
    mailbox_id integer NOT NULL REFERENCES virtual_users(id) ON DELETE CASCADE,
    purpose text NOT NULL CHECK (purpose IN ('verify', 'reset')),
    address text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at timestamptz
);
CREATE INDEX portal_recovery_tokens_mailbox_idx ON portal_recovery_tokens (mailbox_id, purpose, created_at);

-- "Forgot password" requests, counted per client address for the rate limit (kept a day).
CREATE TABLE portal_recovery_requests (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    client_addr inet
);
CREATE INDEX portal_recovery_requests_client_idx ON portal_recovery_requests (client_addr, at);

-- Notices waiting to be sent, queued in the transaction of the change they report and
-- sent after it commits; a failed send is retried with a growing delay. The message is
-- stored whole (it holds no secret: links with tokens are never queued here).
CREATE TABLE portal_outbox (
    id bigserial PRIMARY KEY,
    kind text NOT NULL,
    recipient text NOT NULL,
    -- "mailbox": saved straight into the recipient mailbox's INBOX through Dovecot, past its
    -- forwarding and filters (which whoever made the change may have set); "smtp": through Postfix.
    delivery text NOT NULL DEFAULT 'smtp' CHECK (delivery IN ('mailbox', 'smtp')),
    message bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error text,
    sent_at timestamptz
);
CREATE INDEX portal_outbox_due_idx ON portal_outbox (next_attempt_at) WHERE sent_at IS NULL;
