-- Out-of-office replies and filters: the portal's source of truth for the one Sieve
-- script it writes per mailbox ("mail-portal", rendered whole on every save). The rows
-- go with the mailbox (ON DELETE CASCADE); the script itself lives in the mailbox's
-- home and goes with its mail when the removal queue purges it.
CREATE TABLE portal_vacations (
    mailbox_id integer PRIMARY KEY REFERENCES virtual_users(id) ON DELETE CASCADE,
    enabled boolean NOT NULL DEFAULT false,
    subject varchar(200) NOT NULL,
    body text NOT NULL CHECK (length(body) <= 10000),
    first_day date,
    last_day date CHECK (first_day IS NULL OR last_day IS NULL OR first_day <= last_day),
    interval_days integer NOT NULL DEFAULT 7 CHECK (interval_days BETWEEN 1 AND 30),
    addresses text[] NOT NULL DEFAULT '{}',
    -- Who set it last: "user", or the role of the administrator or helpdesk member
    -- (shown to the user; the audit log has the name).
    set_by_role text NOT NULL DEFAULT 'user',
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE portal_mail_filters (
    id serial PRIMARY KEY,
    mailbox_id integer NOT NULL REFERENCES virtual_users(id) ON DELETE CASCADE,
    position integer NOT NULL,
    field text NOT NULL CHECK (field IN ('from', 'to', 'subject', 'list-id')),
    match text NOT NULL CHECK (match IN ('contains', 'is')),
    value varchar(200) NOT NULL CHECK (length(value) > 0),
    action text NOT NULL CHECK (action IN ('fileinto', 'redirect', 'discard', 'seen')),
    argument varchar(254) NOT NULL DEFAULT '',
    UNIQUE (mailbox_id, position)
);

-- Another client's script (ManageSieve: Roundcube, Thunderbird) that the user chose to
-- keep alongside the portal's rules: the portal's script includes it by name. The hash of
-- the script the portal last wrote tells an edit by another client (Roundcube writes into
-- the active script) from the portal's own text, so such an edit is never overwritten unasked.
CREATE TABLE portal_sieve_state (
    mailbox_id integer PRIMARY KEY REFERENCES virtual_users(id) ON DELETE CASCADE,
    kept_script text,
    script_sha256 bytea,
    installed_at timestamptz NOT NULL DEFAULT now()
);
