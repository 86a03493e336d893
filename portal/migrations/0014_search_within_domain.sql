-- Substring search within one domain reads only that domain's matches: the
-- trigram indexes also hold the domain (btree_gin lets a GIN index carry the
-- integer; like pg_trgm it is a trusted extension, so the database owner may
-- create it). A GIN index answers for any subset of its columns, so the
-- helpdesk's search across every domain still uses them.
CREATE EXTENSION IF NOT EXISTS btree_gin;

DROP INDEX virtual_users_email_trgm_idx;
CREATE INDEX virtual_users_domain_email_trgm_idx ON virtual_users USING gin (domain_id, email gin_trgm_ops);

DROP INDEX virtual_aliases_source_trgm_idx;
CREATE INDEX virtual_aliases_domain_source_trgm_idx ON virtual_aliases USING gin (domain_id, source gin_trgm_ops);
