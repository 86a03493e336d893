-- Adopt the guide's tables in place: no row is changed, and every query of the
-- guide keeps answering the same. Before anything is altered, existing rows are
-- checked against the new constraints; any conflict stops the whole upgrade
-- (the runner applies all pending migrations in one transaction) and is listed.
DO $$
DECLARE
    problems text := '';
    found text;
BEGIN
    SELECT string_agg(format('  virtual_domains id=%s name=%L', id, name), E'\n' ORDER BY id) INTO found
      FROM virtual_domains WHERE name <> lower(btrim(name)) OR btrim(name) = '';
    IF found IS NOT NULL THEN
        problems := problems || E'Domain names that are not lower-case (or empty, or padded with spaces):\n' || found || E'\n';
    END IF;

    SELECT string_agg(format('  virtual_domains id=%s name=%L', id, name), E'\n' ORDER BY lower(name), id) INTO found
      FROM virtual_domains
     WHERE lower(name) IN (SELECT lower(name) FROM virtual_domains GROUP BY lower(name) HAVING count(*) > 1);
    IF found IS NOT NULL THEN
        problems := problems || E'Domains that differ only in case (or are repeated):\n' || found || E'\n';
    END IF;

    SELECT string_agg(format('  virtual_users id=%s email=%L', id, email), E'\n' ORDER BY id) INTO found
      FROM virtual_users WHERE email <> lower(btrim(email)) OR position('@' in email) <= 1;
    IF found IS NOT NULL THEN
        problems := problems || E'Mailbox addresses that are not lower-case or not addresses:\n' || found || E'\n';
    END IF;

    SELECT string_agg(format('  virtual_users id=%s email=%L', id, email), E'\n' ORDER BY lower(email), id) INTO found
      FROM virtual_users
     WHERE lower(email) IN (SELECT lower(email) FROM virtual_users GROUP BY lower(email) HAVING count(*) > 1);
    IF found IS NOT NULL THEN
        problems := problems || E'Mailboxes that differ only in case:\n' || found || E'\n';
    END IF;

    SELECT string_agg(format('  virtual_users id=%s email=%L', id, email), E'\n' ORDER BY id) INTO found
      FROM virtual_users WHERE password = '';
    IF found IS NOT NULL THEN
        problems := problems || E'Mailboxes with an empty password:\n' || found || E'\n';
    END IF;

    SELECT string_agg(format('  virtual_aliases id=%s source=%L destination=%L', id, source, destination), E'\n' ORDER BY id) INTO found
      FROM virtual_aliases
     WHERE source <> lower(btrim(source)) OR destination <> lower(btrim(destination))
        OR position('@' in source) = 0 OR position('@' in destination) <= 1;
    IF found IS NOT NULL THEN
        problems := problems || E'Aliases whose source or destination is not a lower-case address:\n' || found || E'\n';
    END IF;

    SELECT string_agg(format('  virtual_aliases id=%s source=%L destination=%L', id, source, destination), E'\n' ORDER BY lower(source), lower(destination), id) INTO found
      FROM virtual_aliases
     WHERE (lower(source), lower(destination)) IN (
           SELECT lower(source), lower(destination) FROM virtual_aliases
            GROUP BY lower(source), lower(destination) HAVING count(*) > 1);
    IF found IS NOT NULL THEN
        problems := problems || E'Aliases repeated (same source and destination, ignoring case):\n' || found || E'\n';
    END IF;

    IF problems <> '' THEN
        RAISE EXCEPTION 'existing rows conflict with the portal''s constraints; nothing was changed'
            USING DETAIL = rtrim(problems, E'\n'),
                  HINT = 'Postfix and Dovecot look addresses up lower-case, so rows like these are not found by them today. '
                         'Fix or remove them (for example UPDATE virtual_users SET email = lower(email) WHERE id = ...), then run the upgrade again.';
    END IF;
END
$$;

-- Widen columns for real-world names (RFC 5321: 254-character paths, 253-character
-- domains) and for {SCHEME}-prefixed hashes. Widening a varchar rewrites nothing.
ALTER TABLE virtual_domains ALTER COLUMN name TYPE varchar(253);
ALTER TABLE virtual_users ALTER COLUMN email TYPE varchar(254);
ALTER TABLE virtual_users ALTER COLUMN password TYPE varchar(255);
ALTER TABLE virtual_aliases ALTER COLUMN source TYPE varchar(254);
ALTER TABLE virtual_aliases ALTER COLUMN destination TYPE varchar(254);

-- Lookup keys are stored lower-case: Postfix folds its search key to lower case and
-- Dovecot's auth_username_format is %Lu, so a mixed-case row could never match.
-- With lower-case enforced, plain uniqueness is case-insensitive uniqueness.
ALTER TABLE virtual_domains
    ADD CONSTRAINT virtual_domains_name_lower CHECK (name = lower(btrim(name)) AND name <> ''),
    ADD CONSTRAINT virtual_domains_name_key UNIQUE (name);
ALTER TABLE virtual_users
    ADD CONSTRAINT virtual_users_email_lower CHECK (email = lower(btrim(email)) AND position('@' in email) > 1),
    ADD CONSTRAINT virtual_users_password_set CHECK (password <> '');
ALTER TABLE virtual_aliases
    ADD CONSTRAINT virtual_aliases_source_lower CHECK (source = lower(btrim(source)) AND position('@' in source) > 0),
    ADD CONSTRAINT virtual_aliases_destination_lower CHECK (destination = lower(btrim(destination)) AND position('@' in destination) > 1),
    -- Leading column "source" makes this the index Postfix's alias lookup uses.
    ADD CONSTRAINT virtual_aliases_source_destination_key UNIQUE (source, destination);

-- Foreign keys are not indexed by PostgreSQL itself; these serve per-domain lists
-- and keep ON DELETE CASCADE from scanning whole tables.
CREATE INDEX virtual_users_domain_id_idx ON virtual_users (domain_id, email);
CREATE INDEX virtual_aliases_domain_id_idx ON virtual_aliases (domain_id, source);

-- State the portal needs. Defaults keep every adopted row as it behaves today.
ALTER TABLE virtual_domains
    ADD COLUMN active boolean NOT NULL DEFAULT true,
    ADD COLUMN max_mailboxes integer NOT NULL DEFAULT 0 CHECK (max_mailboxes >= 0),
    ADD COLUMN max_aliases integer NOT NULL DEFAULT 0 CHECK (max_aliases >= 0),
    ADD COLUMN default_quota_bytes bigint NOT NULL DEFAULT 0 CHECK (default_quota_bytes >= 0),
    ADD COLUMN max_quota_bytes bigint NOT NULL DEFAULT 0 CHECK (max_quota_bytes >= 0),
    ADD COLUMN allow_personal_aliases boolean NOT NULL DEFAULT true,
    ADD COLUMN max_personal_aliases integer NOT NULL DEFAULT 5 CHECK (max_personal_aliases >= 0),
    ADD COLUMN created_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
COMMENT ON COLUMN virtual_domains.max_mailboxes IS '0 means no limit';
COMMENT ON COLUMN virtual_domains.max_aliases IS '0 means no limit';
COMMENT ON COLUMN virtual_domains.default_quota_bytes IS 'quota of a mailbox whose own limit is 0; 0 means unlimited';
COMMENT ON COLUMN virtual_domains.max_quota_bytes IS 'ceiling for any mailbox limit of the domain; 0 means none';

ALTER TABLE virtual_users
    ADD COLUMN active boolean NOT NULL DEFAULT true,
    ADD COLUMN quota_bytes bigint NOT NULL DEFAULT 0 CHECK (quota_bytes >= 0),
    ADD COLUMN created_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
COMMENT ON COLUMN virtual_users.quota_bytes IS '0 means the domain default';

ALTER TABLE virtual_aliases
    ADD COLUMN created_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

-- updated_at follows every UPDATE, also those made outside the portal.
CREATE FUNCTION portal_touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER virtual_domains_touch BEFORE UPDATE ON virtual_domains
    FOR EACH ROW EXECUTE FUNCTION portal_touch_updated_at();
CREATE TRIGGER virtual_users_touch BEFORE UPDATE ON virtual_users
    FOR EACH ROW EXECUTE FUNCTION portal_touch_updated_at();
CREATE TRIGGER virtual_aliases_touch BEFORE UPDATE ON virtual_aliases
    FOR EACH ROW EXECUTE FUNCTION portal_touch_updated_at();
