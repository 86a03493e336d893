-- Deleted mailboxes whose mail is kept for a grace period: the address cannot be
-- given to someone else until its maildir is purged (flask --app app mailbox purge).
CREATE TABLE portal_mailbox_removals (
    id bigserial PRIMARY KEY,
    email varchar(254) NOT NULL CHECK (email = lower(email)),
    maildir text NOT NULL,
    deleted_at timestamptz NOT NULL DEFAULT now(),
    purge_after timestamptz NOT NULL,
    purged_at timestamptz
);
CREATE UNIQUE INDEX portal_mailbox_removals_pending_idx ON portal_mailbox_removals (email) WHERE purged_at IS NULL;
CREATE INDEX portal_mailbox_removals_due_idx ON portal_mailbox_removals (purge_after) WHERE purged_at IS NULL;
