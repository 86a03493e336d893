-- Alias domains: example.org delivers to the same mailboxes as example.com, address
-- by address. Postfix's shipped maps read this table (the mail role may SELECT it):
-- x@example.org goes where x@example.com goes when that address exists there; a
-- catch-all applies only where the target has one; an explicit alias on the alias
-- domain (a virtual_aliases row of the target domain with an @example.org source) wins.
-- Deleting the target domain deletes its alias domains.
CREATE TABLE portal_alias_domains (
    id serial PRIMARY KEY,
    name varchar(50) NOT NULL UNIQUE CHECK (name = lower(name) AND name <> ''),
    target_domain_id integer NOT NULL REFERENCES virtual_domains(id) ON DELETE CASCADE,
    active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX portal_alias_domains_target_idx ON portal_alias_domains (target_domain_id);
COMMENT ON TABLE portal_alias_domains IS 'alias domain name -> the mail domain whose addresses it mirrors';

-- A name is a mail domain or an alias domain, never both, whichever path writes it
-- (pages, command line, CSV import): each insert or rename takes a lock on the name
-- and looks in the other table, so two concurrent writers cannot both pass.
CREATE FUNCTION portal_domain_name_is_free() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('portal domain name ' || NEW.name));
    IF TG_TABLE_NAME = 'virtual_domains' THEN
        IF EXISTS (SELECT 1 FROM portal_alias_domains WHERE name = NEW.name) THEN
            RAISE EXCEPTION 'domain name % is an alias domain', NEW.name USING ERRCODE = 'unique_violation',
                CONSTRAINT = 'portal_domain_names_unique';
        END IF;
    ELSIF EXISTS (SELECT 1 FROM virtual_domains WHERE name = NEW.name) THEN
        RAISE EXCEPTION 'alias domain name % is a mail domain', NEW.name USING ERRCODE = 'unique_violation',
            CONSTRAINT = 'portal_domain_names_unique';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER virtual_domains_name_is_free BEFORE INSERT OR UPDATE OF name ON virtual_domains
    FOR EACH ROW EXECUTE FUNCTION portal_domain_name_is_free();
CREATE TRIGGER portal_alias_domains_name_is_free BEFORE INSERT OR UPDATE OF name ON portal_alias_domains
    FOR EACH ROW EXECUTE FUNCTION portal_domain_name_is_free();
