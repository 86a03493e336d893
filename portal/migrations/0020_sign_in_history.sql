-- The portal sign-ins of each mailbox, newest first on the user's start page, so a
-- user sees when and from where the account was used. Only the last ten per mailbox
-- are kept (the sign-in trims the rest in its own transaction); a deleted mailbox
-- takes its history with it, and a renamed one keeps it (the id stays).
CREATE TABLE portal_sign_ins (
    id bigserial PRIMARY KEY,
    mailbox_id integer NOT NULL REFERENCES virtual_users(id) ON DELETE CASCADE,
    at timestamptz NOT NULL DEFAULT now(),
    client_addr inet
);
CREATE INDEX portal_sign_ins_mailbox_idx ON portal_sign_ins (mailbox_id, at DESC, id DESC);
