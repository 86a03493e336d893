-- Personal aliases: extra addresses a user made for themselves. The owner column
-- tells them apart from aliases that admins manage (NULL) and lets the owner, and
-- only the owner, remove them. Deleting the mailbox removes its personal aliases.
ALTER TABLE virtual_aliases
    ADD COLUMN owner_id integer REFERENCES virtual_users(id) ON DELETE CASCADE;
COMMENT ON COLUMN virtual_aliases.owner_id IS 'mailbox that created this personal alias; NULL: managed by admins';
CREATE INDEX virtual_aliases_owner_id_idx ON virtual_aliases (owner_id) WHERE owner_id IS NOT NULL;
-- "Which addresses deliver to me?" and loop checks walk the map backwards too.
CREATE INDEX virtual_aliases_destination_idx ON virtual_aliases (destination);
