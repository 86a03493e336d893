-- Send-as rights: addresses a mailbox may use as its sender on the submission
-- service, besides its own, its personal addresses and those addresses on the
-- alias domains of its domain (Postfix's smtpd_sender_login_maps, shipped as
-- pgsql-sender-login.cf, reads this table: the mail role may SELECT it). A domain
-- admin grants them, for example info@ to the people who answer it. The map never
-- lets a grant speak for a mailbox's or a personal address: those stay their owner's.
CREATE TABLE portal_send_as (
    id serial PRIMARY KEY,
    mailbox_id integer NOT NULL REFERENCES virtual_users(id) ON DELETE CASCADE,
    address varchar(100) NOT NULL CHECK (address = lower(address) AND position('@' IN address) > 1),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (address, mailbox_id)
);
CREATE INDEX portal_send_as_mailbox_idx ON portal_send_as (mailbox_id);
COMMENT ON TABLE portal_send_as IS 'address -> mailbox allowed to send as it (granted by a domain admin)';

-- What Postfix's shipped maps ask, as functions: Postfix's pgsql client sends each
-- lookup as literal SQL, so a query with several branches is planned again for every
-- lookup (about 1.5 ms for the alias map, several times its execution); a PL/pgSQL
-- function keeps its plans for the connection, and asks only what the key needs (the
-- alias domain of a key is looked up once). The maps call them with '%s' only (Postfix
-- skips a query with %u for the "@domain" key). They run with the rights of the mail
-- role that calls them, which reads these tables and nothing else.

-- virtual_mailbox_domains (pgsql-domains.cf): an active domain, or an enabled alias
-- domain of an active domain.
CREATE FUNCTION portal_postfix_domain(lookup_key text) RETURNS SETOF integer
    LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY SELECT 1 FROM virtual_domains WHERE name = lookup_key AND active;
    IF FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT 1 FROM portal_alias_domains x JOIN virtual_domains t ON t.id = x.target_domain_id
                  WHERE x.name = lookup_key AND x.active AND t.active;
END
$$;

-- virtual_alias_maps (pgsql-aliases.cf). On an ordinary domain: the rows of the
-- address, when its domain is active and it is not a disabled mailbox; else a mailbox
-- answers with itself (a disabled one too: pgsql-recipient-access.cf refuses it, and a
-- catch-all never takes its mail). On an alias domain, enabled and of an active domain:
-- its explicit rows; else the same local part on the target where that is a mailbox or
-- has rows, and for the "@alias" probe the target's catch-all. A disabled alias domain
-- answers nothing.
CREATE FUNCTION portal_postfix_alias(lookup_key text) RETURNS SETOF text
    LANGUAGE plpgsql STABLE AS $$
DECLARE
    local_part text := split_part(lookup_key, '@', 1);
    linked boolean;
    target text;
    mirrored text;
BEGIN
    SELECT x.active AND t.active, t.name INTO linked, target
      FROM portal_alias_domains x JOIN virtual_domains t ON t.id = x.target_domain_id
     WHERE x.name = split_part(lookup_key, '@', 2);
    IF NOT FOUND THEN
        RETURN QUERY
        SELECT a.destination::text FROM virtual_aliases a JOIN virtual_domains d ON d.id = a.domain_id
         WHERE a.source = lookup_key AND d.active
           AND NOT EXISTS (SELECT 1 FROM virtual_users u WHERE u.email = a.source AND NOT u.active)
        UNION ALL
        SELECT u.email::text FROM virtual_users u
         WHERE u.email = lookup_key
           AND (NOT u.active OR NOT EXISTS (SELECT 1 FROM virtual_aliases a WHERE a.source = lookup_key));
        RETURN;
    END IF;
    IF NOT linked THEN
        RETURN;
    END IF;
    -- No mailbox lives on an alias domain (a name is one or the other): its own rows are aliases.
    RETURN QUERY
    SELECT a.destination::text FROM virtual_aliases a WHERE a.source = lookup_key;
    IF FOUND THEN
        RETURN;  -- an explicit alias on the alias domain wins over the mapping
    END IF;
    IF local_part = '' THEN
        RETURN QUERY SELECT c.destination::text FROM virtual_aliases c WHERE c.source = '@' || target;
        RETURN;
    END IF;
    mirrored := local_part || '@' || target;
    IF EXISTS (SELECT 1 FROM virtual_users u WHERE u.email = mirrored)
       OR EXISTS (SELECT 1 FROM virtual_aliases a WHERE a.source = mirrored) THEN
        RETURN NEXT mirrored;
    END IF;
END
$$;

-- check_recipient_access (pgsql-recipient-access.cf): a 5xx for a disabled mailbox,
-- addressed directly or on an alias domain of its domain (unless an explicit alias there
-- takes the address). Never OK, which would open a relay.
CREATE FUNCTION portal_postfix_recipient_access(lookup_key text) RETURNS SETOF text
    LANGUAGE plpgsql STABLE AS $$
DECLARE
    local_part text := split_part(lookup_key, '@', 1);
    target text;
BEGIN
    SELECT t.name INTO target FROM portal_alias_domains x JOIN virtual_domains t ON t.id = x.target_domain_id
     WHERE x.name = split_part(lookup_key, '@', 2);
    IF NOT FOUND THEN
        RETURN QUERY
        SELECT '550 5.2.1 This mailbox is disabled'::text FROM virtual_users WHERE email = lookup_key AND NOT active;
        RETURN;
    END IF;
    IF local_part = '' OR EXISTS (SELECT 1 FROM virtual_aliases a WHERE a.source = lookup_key) THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT '550 5.2.1 This mailbox is disabled'::text FROM virtual_users
     WHERE email = local_part || '@' || target AND NOT active;
END
$$;

-- smtpd_sender_login_maps (pgsql-sender-login.cf): the logins that own a sender
-- address: the mailbox itself, the owner of a personal address, on an alias domain the
-- owner of the same address on its target, and mailboxes granted the address
-- (portal_send_as), unless it is a mailbox's or a personal address: those stay their
-- owner's. Disabled mailboxes and domains own nothing, nor does a disabled alias domain.
CREATE FUNCTION portal_postfix_sender_login(lookup_key text) RETURNS SETOF text
    LANGUAGE plpgsql STABLE AS $$
DECLARE
    local_part text := split_part(lookup_key, '@', 1);
    linked boolean;
    target text;
    mirrored text;
BEGIN
    SELECT x.active AND t.active, t.name INTO linked, target
      FROM portal_alias_domains x JOIN virtual_domains t ON t.id = x.target_domain_id
     WHERE x.name = split_part(lookup_key, '@', 2);
    IF FOUND THEN
        IF NOT linked OR local_part = '' THEN
            RETURN;
        END IF;
        mirrored := local_part || '@' || target;
    END IF;
    -- The address itself (on an alias domain, its form on the target): its mailbox, else the
    -- owner of the personal address, else the mailboxes granted it.
    RETURN QUERY
    SELECT u.email::text FROM virtual_users u JOIN virtual_domains d ON d.id = u.domain_id
     WHERE u.email = coalesce(mirrored, lookup_key) AND u.active AND d.active
    UNION ALL
    SELECT o.email::text FROM virtual_aliases a JOIN virtual_users o ON o.id = a.owner_id
      JOIN virtual_domains d ON d.id = o.domain_id
     WHERE a.source = coalesce(mirrored, lookup_key) AND o.active AND d.active
    UNION ALL
    SELECT o.email::text FROM portal_send_as g JOIN virtual_users o ON o.id = g.mailbox_id
      JOIN virtual_domains d ON d.id = o.domain_id
     WHERE g.address = lookup_key AND o.active AND d.active
       AND NOT EXISTS (SELECT 1 FROM virtual_users m WHERE m.email = coalesce(mirrored, g.address))
       AND NOT EXISTS (SELECT 1 FROM virtual_aliases p
                        WHERE p.source = coalesce(mirrored, g.address) AND p.owner_id IS NOT NULL);
END
$$;
