-- Upgrading: this migration rewrites every usage row in one transaction and holds
-- virtual_domains meanwhile, so Postfix and Dovecot lookups wait for it (seconds at
-- 500k mailboxes; mail is deferred, not lost). Run it in a quiet moment.
--
-- The administration overview's figures, kept up to date as rows change, so that
-- reading them costs the same at 500k mailboxes as at 50 (one row per domain in
-- scope, never a scan of the mailboxes): disabled mailboxes per domain, and the
-- mailboxes at or above 80 % and 95 % of their size limit.

-- Disabled mailboxes: counted beside mailbox_count by the same statement triggers.
ALTER TABLE virtual_domains ADD COLUMN disabled_count integer NOT NULL DEFAULT 0;
COMMENT ON COLUMN virtual_domains.disabled_count IS 'mailboxes of the domain with active = false (kept by triggers)';
UPDATE virtual_domains d SET disabled_count = c.n
  FROM (SELECT domain_id, count(*) AS n FROM virtual_users WHERE NOT active GROUP BY domain_id) c
 WHERE c.domain_id = d.id;

CREATE OR REPLACE FUNCTION portal_count_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        IF TG_TABLE_NAME = 'virtual_users' THEN
            UPDATE virtual_domains d SET mailbox_count = d.mailbox_count - c.n, disabled_count = d.disabled_count - c.off
              FROM (SELECT domain_id, count(*) AS n, count(*) FILTER (WHERE NOT active) AS off
                      FROM old_rows GROUP BY domain_id) c
             WHERE d.id = c.domain_id;
        ELSE
            UPDATE virtual_domains d SET alias_count = d.alias_count - c.n
              FROM (SELECT domain_id, count(*) AS n FROM old_rows GROUP BY domain_id) c WHERE d.id = c.domain_id;
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        IF TG_TABLE_NAME = 'virtual_users' THEN
            UPDATE virtual_domains d SET mailbox_count = d.mailbox_count + c.n, disabled_count = d.disabled_count + c.off
              FROM (SELECT domain_id, count(*) AS n, count(*) FILTER (WHERE NOT active) AS off
                      FROM new_rows GROUP BY domain_id) c
             WHERE d.id = c.domain_id;
        ELSE
            UPDATE virtual_domains d SET alias_count = d.alias_count + c.n
              FROM (SELECT domain_id, count(*) AS n FROM new_rows GROUP BY domain_id) c WHERE d.id = c.domain_id;
        END IF;
    END IF;
    RETURN NULL;
END
$$;

-- The limit view gains the mailbox's domain (appended: Dovecot reads it by column name).
CREATE OR REPLACE VIEW portal_mailbox_quota AS
SELECT u.id AS mailbox_id,
       u.email,
       CASE
           WHEN d.max_quota_bytes > 0
               THEN least(coalesce(nullif(coalesce(nullif(u.quota_bytes, 0), d.default_quota_bytes), 0),
                                   d.max_quota_bytes),
                          d.max_quota_bytes)
           ELSE coalesce(nullif(u.quota_bytes, 0), d.default_quota_bytes)
       END AS limit_bytes,
       u.domain_id
  FROM virtual_users u JOIN virtual_domains d ON d.id = u.domain_id;

-- Each usage row carries its mailbox's domain and how full it is: 0, 80 (at least
-- 80 % of the limit) or 95. Dovecot writes only email, bytes and messages; a
-- BEFORE trigger fills these in from the limit as it is now. Whatever changes a
-- limit (the mailbox's, its domain's default or ceiling) or adds or removes the
-- mailbox rewrites the usage rows concerned with their own values ("touches"
-- them), which runs that trigger again. A usage row without a mailbox (deleted,
-- waiting for its purge) has no domain and level 0.
ALTER TABLE portal_quota_usage
    ADD COLUMN domain_id integer,
    ADD COLUMN level smallint NOT NULL DEFAULT 0 CHECK (level IN (0, 80, 95));

-- Mailboxes at each level, per domain. No foreign key: Dovecot's write must never
-- wait for, or fail on, a domain being deleted; rows of deleted domains are zero
-- and are never read (every reader joins virtual_domains).
CREATE TABLE portal_usage_levels (
    domain_id integer PRIMARY KEY,
    over_80 integer NOT NULL DEFAULT 0,
    over_95 integer NOT NULL DEFAULT 0
);

-- SECURITY DEFINER: they run with the portal's rights whoever writes the row
-- (Dovecot's role, the purge's), so no role needs a grant on the counters. Their
-- search_path is fixed, with pg_temp last: a temporary table or view of the
-- writer's session must never stand in for one of ours.
CREATE FUNCTION portal_usage_level() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    mailbox record;
BEGIN
    SELECT q.domain_id, q.limit_bytes INTO mailbox FROM portal_mailbox_quota q WHERE q.email = NEW.email;
    NEW.domain_id := mailbox.domain_id;
    NEW.level := CASE
        WHEN coalesce(mailbox.limit_bytes, 0) <= 0 THEN 0
        -- numeric: a limit set by hand near the bigint ceiling must not overflow and fail Dovecot's write
        WHEN NEW.bytes::numeric * 100 >= mailbox.limit_bytes::numeric * 95 THEN 95
        WHEN NEW.bytes::numeric * 100 >= mailbox.limit_bytes::numeric * 80 THEN 80
        ELSE 0
    END;
    RETURN NEW;
END
$$;

CREATE FUNCTION portal_count_usage_levels() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    -- Only rows that change level or domain change a counter: the usual write (a few
    -- more bytes, same level) sums to nothing and writes nothing. A statement
    -- trigger, so that a bulk change (a domain's new default limit) counts once.
    IF TG_OP = 'INSERT' THEN
        INSERT INTO portal_usage_levels AS l (domain_id, over_80, over_95)
        SELECT n.domain_id, count(*) FILTER (WHERE n.level >= 80), count(*) FILTER (WHERE n.level >= 95)
          FROM new_rows n
         WHERE n.domain_id IS NOT NULL AND n.level > 0
         GROUP BY n.domain_id
        ON CONFLICT (domain_id) DO UPDATE
           SET over_80 = l.over_80 + EXCLUDED.over_80, over_95 = l.over_95 + EXCLUDED.over_95;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE portal_usage_levels l
           SET over_80 = l.over_80 - c.d80, over_95 = l.over_95 - c.d95
          FROM (SELECT o.domain_id, count(*) FILTER (WHERE o.level >= 80) AS d80,
                       count(*) FILTER (WHERE o.level >= 95) AS d95
                  FROM old_rows o
                 WHERE o.domain_id IS NOT NULL AND o.level > 0
                 GROUP BY o.domain_id) c
         WHERE l.domain_id = c.domain_id;
    ELSE
        INSERT INTO portal_usage_levels AS l (domain_id, over_80, over_95)
        SELECT c.domain_id, sum(c.d80), sum(c.d95)
          FROM (SELECT n.domain_id, (n.level >= 80)::int AS d80, (n.level >= 95)::int AS d95 FROM new_rows n
                UNION ALL
                SELECT o.domain_id, -(o.level >= 80)::int, -(o.level >= 95)::int FROM old_rows o) c
         WHERE c.domain_id IS NOT NULL
         GROUP BY c.domain_id
        HAVING sum(c.d80) <> 0 OR sum(c.d95) <> 0
        ON CONFLICT (domain_id) DO UPDATE
           SET over_80 = l.over_80 + EXCLUDED.over_80, over_95 = l.over_95 + EXCLUDED.over_95;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER portal_quota_usage_level BEFORE INSERT OR UPDATE ON portal_quota_usage
    FOR EACH ROW EXECUTE FUNCTION portal_usage_level();
CREATE TRIGGER portal_quota_usage_count_insert AFTER INSERT ON portal_quota_usage
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION portal_count_usage_levels();
CREATE TRIGGER portal_quota_usage_count_update AFTER UPDATE ON portal_quota_usage
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION portal_count_usage_levels();
CREATE TRIGGER portal_quota_usage_count_delete AFTER DELETE ON portal_quota_usage
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION portal_count_usage_levels();

-- Touch the usage rows whose mailbox was added, removed, or given another limit, address or domain.
CREATE FUNCTION portal_touch_usage() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF TG_TABLE_NAME = 'virtual_domains' THEN
        UPDATE portal_quota_usage q SET bytes = q.bytes
          FROM virtual_users u
         WHERE u.domain_id = NEW.id AND q.email = u.email;
    ELSIF TG_OP = 'INSERT' THEN
        UPDATE portal_quota_usage q SET bytes = q.bytes FROM new_rows n WHERE q.email = n.email;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE portal_quota_usage q SET bytes = q.bytes FROM old_rows o WHERE q.email = o.email;
    ELSE
        UPDATE portal_quota_usage q SET bytes = q.bytes
          FROM old_rows o JOIN new_rows n ON n.id = o.id
         WHERE (o.quota_bytes, o.email, o.domain_id) IS DISTINCT FROM (n.quota_bytes, n.email, n.domain_id)
           AND q.email IN (o.email, n.email);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER virtual_users_usage_insert AFTER INSERT ON virtual_users
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION portal_touch_usage();
CREATE TRIGGER virtual_users_usage_delete AFTER DELETE ON virtual_users
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION portal_touch_usage();
CREATE TRIGGER virtual_users_usage_update AFTER UPDATE ON virtual_users
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION portal_touch_usage();
CREATE TRIGGER virtual_domains_usage_limits AFTER UPDATE OF default_quota_bytes, max_quota_bytes ON virtual_domains
    FOR EACH ROW
    WHEN (OLD.default_quota_bytes IS DISTINCT FROM NEW.default_quota_bytes
          OR OLD.max_quota_bytes IS DISTINCT FROM NEW.max_quota_bytes)
    EXECUTE FUNCTION portal_touch_usage();

-- The filtered lists ("disabled", "over 80 %", "over 95 %") walk these in address
-- order, so a page costs the same however many other mailboxes the domain has.
CREATE INDEX virtual_users_disabled_idx ON virtual_users (domain_id, (email COLLATE "C")) WHERE NOT active;
CREATE INDEX portal_quota_usage_over_80_idx ON portal_quota_usage (domain_id, (email COLLATE "C")) WHERE level >= 80;
CREATE INDEX portal_quota_usage_over_95_idx ON portal_quota_usage (domain_id, (email COLLATE "C")) WHERE level >= 95;

-- The rows already there: fill in domain and level, and count them.
UPDATE portal_quota_usage SET bytes = bytes;

-- A domain admin's pending purges, soonest first (the overview and its list).
CREATE INDEX portal_mailbox_removals_domain_idx ON portal_mailbox_removals (split_part(email, '@', 2), purge_after)
    WHERE purged_at IS NULL;
