-- The mailbox list can be sorted newest or oldest first: keyset pages in
-- (created_at, id) order within a domain need an index in that order, or every
-- page of a 500k-mailbox domain would sort the whole domain.
CREATE INDEX virtual_users_domain_created_idx ON virtual_users (domain_id, created_at, id);
