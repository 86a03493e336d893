-- Admin lists stay fast at 10k domains, 500k mailboxes and 1M aliases:
-- - keyset pagination in byte order (COLLATE "C"; keys are lower-case ASCII, so
--   that is also alphabetical), which is also the order a LIKE 'prefix%' search
--   can use a plain btree in;
-- - trigram indexes for substring search (pg_trgm is a trusted extension: the
--   database owner may create it, no superuser needed).
CREATE EXTENSION IF NOT EXISTS pg_trgm;

DROP INDEX virtual_users_domain_id_idx;
CREATE INDEX virtual_users_domain_email_idx ON virtual_users (domain_id, (email COLLATE "C"));
CREATE INDEX virtual_users_email_c_idx ON virtual_users ((email COLLATE "C"));
CREATE INDEX virtual_users_email_trgm_idx ON virtual_users USING gin (email gin_trgm_ops);

DROP INDEX virtual_aliases_domain_id_idx;
CREATE INDEX virtual_aliases_domain_source_idx ON virtual_aliases (domain_id, (source COLLATE "C"), id);
CREATE INDEX virtual_aliases_source_trgm_idx ON virtual_aliases USING gin (source gin_trgm_ops);

CREATE INDEX virtual_domains_name_c_idx ON virtual_domains ((name COLLATE "C"));
CREATE INDEX virtual_domains_name_trgm_idx ON virtual_domains USING gin (name gin_trgm_ops);
