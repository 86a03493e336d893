-- Sign-ins waiting for Dovecot's verdict, a few slots per client (IPv4 address
-- or IPv6 /64), shared by every worker process and host: a client whose failed
-- guesses wait out Dovecot's growing delay can hold only these, not the portal.
-- A slot whose holder died frees itself when "until" passes.
CREATE TABLE portal_sign_in_slots (
    client_key varchar(64) NOT NULL,
    slot smallint NOT NULL CHECK (slot > 0),
    until timestamptz NOT NULL,
    PRIMARY KEY (client_key, slot)
);
