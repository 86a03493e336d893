-- The portal's own tables. Postfix and Dovecot never read them.

-- Roles belong to a mailbox row: deleting the mailbox drops its roles, so a later
-- owner of the same address never inherits them.
CREATE TABLE portal_roles (
    id bigserial PRIMARY KEY,
    user_id integer NOT NULL REFERENCES virtual_users(id) ON DELETE CASCADE,
    role text NOT NULL CHECK (role IN ('superadmin', 'domain_admin', 'helpdesk')),
    -- NULL means every domain (superadmin, global helpdesk).
    domain_id integer REFERENCES virtual_domains(id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (role <> 'superadmin' OR domain_id IS NULL),
    CHECK (role <> 'domain_admin' OR domain_id IS NOT NULL)
);
CREATE UNIQUE INDEX portal_roles_unique ON portal_roles (user_id, role, coalesce(domain_id, 0));
CREATE INDEX portal_roles_domain_id_idx ON portal_roles (domain_id);

-- One row per change. Names, not foreign keys, so history outlives what it names.
-- Never holds a password, a hash or a session id.
CREATE TABLE portal_audit_log (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    actor varchar(254) NOT NULL,
    actor_role text NOT NULL,
    client_addr inet,
    action text NOT NULL,
    target varchar(254) NOT NULL DEFAULT '',
    domain varchar(253) NOT NULL DEFAULT '',
    summary jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX portal_audit_log_at_idx ON portal_audit_log (at DESC, id DESC);
CREATE INDEX portal_audit_log_actor_idx ON portal_audit_log (actor, at DESC, id DESC);
CREATE INDEX portal_audit_log_target_idx ON portal_audit_log (target, at DESC, id DESC);
CREATE INDEX portal_audit_log_domain_idx ON portal_audit_log (domain, at DESC, id DESC);
