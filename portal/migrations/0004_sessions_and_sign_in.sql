-- Sign-in state shared by every worker and every portal host.

-- Password life cycle of a mailbox.
ALTER TABLE virtual_users
    ADD COLUMN password_must_change boolean NOT NULL DEFAULT false,
    ADD COLUMN password_changed_at timestamptz;

-- Server-side sessions: the cookie carries a random token, this table only its
-- SHA-256, so neither a copied cookie outlives a logout nor a database dump yields
-- a usable cookie. Deleting the mailbox ends its sessions.
CREATE TABLE portal_sessions (
    token_hash bytea PRIMARY KEY,
    user_id integer NOT NULL REFERENCES virtual_users(id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    client_addr inet
);
CREATE INDEX portal_sessions_user_id_idx ON portal_sessions (user_id);
CREATE INDEX portal_sessions_last_seen_at_idx ON portal_sessions (last_seen_at);

-- Failed sign-ins per account and per client address, counted in a window.
-- The account key is the canonical address as typed, whether or not it exists,
-- so locking behaves the same for unknown addresses (no enumeration).
CREATE TABLE portal_login_throttle (
    kind text NOT NULL CHECK (kind IN ('account', 'client')),
    key varchar(254) NOT NULL,
    failures integer NOT NULL,
    window_started_at timestamptz NOT NULL,
    locked_until timestamptz,
    PRIMARY KEY (kind, key)
);
