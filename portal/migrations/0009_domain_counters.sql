-- Mailbox and alias counts kept on the domain row, so that lists show them
-- without counting a large domain's rows on every page, and so that a domain's
-- limits can be enforced under concurrency: the counter update locks the domain
-- row until the inserting transaction ends. Statement-level triggers keep COPY
-- and bulk changes cheap. (TRUNCATE bypasses them: re-count after one.)
ALTER TABLE virtual_domains
    ADD COLUMN mailbox_count integer NOT NULL DEFAULT 0,
    ADD COLUMN alias_count integer NOT NULL DEFAULT 0;
COMMENT ON COLUMN virtual_domains.alias_count IS 'rows in virtual_aliases of the domain (kept by triggers)';

UPDATE virtual_domains d SET mailbox_count = c.n
  FROM (SELECT domain_id, count(*) AS n FROM virtual_users GROUP BY domain_id) c WHERE c.domain_id = d.id;
UPDATE virtual_domains d SET alias_count = c.n
  FROM (SELECT domain_id, count(*) AS n FROM virtual_aliases GROUP BY domain_id) c WHERE c.domain_id = d.id;

CREATE FUNCTION portal_count_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        IF TG_TABLE_NAME = 'virtual_users' THEN
            UPDATE virtual_domains d SET mailbox_count = d.mailbox_count - c.n
              FROM (SELECT domain_id, count(*) AS n FROM old_rows GROUP BY domain_id) c WHERE d.id = c.domain_id;
        ELSE
            UPDATE virtual_domains d SET alias_count = d.alias_count - c.n
              FROM (SELECT domain_id, count(*) AS n FROM old_rows GROUP BY domain_id) c WHERE d.id = c.domain_id;
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        IF TG_TABLE_NAME = 'virtual_users' THEN
            UPDATE virtual_domains d SET mailbox_count = d.mailbox_count + c.n
              FROM (SELECT domain_id, count(*) AS n FROM new_rows GROUP BY domain_id) c WHERE d.id = c.domain_id;
        ELSE
            UPDATE virtual_domains d SET alias_count = d.alias_count + c.n
              FROM (SELECT domain_id, count(*) AS n FROM new_rows GROUP BY domain_id) c WHERE d.id = c.domain_id;
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER virtual_users_count_insert AFTER INSERT ON virtual_users
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION portal_count_rows();
CREATE TRIGGER virtual_users_count_delete AFTER DELETE ON virtual_users
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION portal_count_rows();
CREATE TRIGGER virtual_users_count_update AFTER UPDATE ON virtual_users
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION portal_count_rows();
CREATE TRIGGER virtual_aliases_count_insert AFTER INSERT ON virtual_aliases
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION portal_count_rows();
CREATE TRIGGER virtual_aliases_count_delete AFTER DELETE ON virtual_aliases
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION portal_count_rows();
CREATE TRIGGER virtual_aliases_count_update AFTER UPDATE ON virtual_aliases
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION portal_count_rows();
