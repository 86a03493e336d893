-- Tokens for the provisioning API (/api/v1). A token belongs to a mailbox that holds
-- a role and can do at most what that person can do now (its roles are read on every
-- call); it may be narrowed to some domains, to reading, or to an expiry date. The
-- secret is shown once; only its SHA-256 is kept (it is 32 random bytes, so a slow
-- password hash would add nothing but latency). Revoking is immediate: every call
-- reads this row. The per-token rate limit counts calls in a one-minute window here,
-- shared by every worker and host.
CREATE TABLE portal_api_tokens (
    id serial PRIMARY KEY,
    mailbox_id integer NOT NULL REFERENCES virtual_users(id) ON DELETE CASCADE,
    name varchar(100) NOT NULL CHECK (length(btrim(name)) > 0),
    secret_sha256 bytea NOT NULL CHECK (length(secret_sha256) = 32),
    domain_ids integer[],  -- NULL: every domain the person manages
    read_only boolean NOT NULL DEFAULT false,
    expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    last_used_at timestamptz,
    last_used_addr inet,
    window_started timestamptz,
    window_calls integer NOT NULL DEFAULT 0
);
CREATE INDEX portal_api_tokens_mailbox_idx ON portal_api_tokens (mailbox_id, created_at DESC);

-- Which token made a change (NULL: the pages, the command line or the CSV import).
-- No foreign key: the log outlives the tokens it names.
ALTER TABLE portal_audit_log ADD COLUMN token_id integer;
