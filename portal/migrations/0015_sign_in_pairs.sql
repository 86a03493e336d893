-- Sign-in failures are also counted per account and client pair ("pair": the
-- address, "|", the client's address or IPv6 /64), so that a guesser locks out
-- only himself; the key then holds an address and a client.
ALTER TABLE portal_login_throttle DROP CONSTRAINT portal_login_throttle_kind_check;
ALTER TABLE portal_login_throttle ADD CONSTRAINT portal_login_throttle_kind_check
    CHECK (kind IN ('account', 'client', 'pair'));
ALTER TABLE portal_login_throttle ALTER COLUMN key TYPE varchar(320);
