-- Quota: the limit Dovecot enforces is computed in one place, this view, which
-- Dovecot's userdb query and the portal both read.
--   mailbox limit (virtual_users.quota_bytes), or the domain default when it is 0;
--   never above the domain ceiling (max_quota_bytes) when the domain has one;
--   0 means unlimited, as in Dovecot's quota_rule.
CREATE VIEW portal_mailbox_quota AS
SELECT u.id AS mailbox_id,
       u.email,
       CASE
           WHEN d.max_quota_bytes > 0
               THEN least(coalesce(nullif(coalesce(nullif(u.quota_bytes, 0), d.default_quota_bytes), 0),
                                   d.max_quota_bytes),
                          d.max_quota_bytes)
           ELSE coalesce(nullif(u.quota_bytes, 0), d.default_quota_bytes)
       END AS limit_bytes
  FROM virtual_users u JOIN virtual_domains d ON d.id = u.domain_id;

-- Usage as Dovecot counts it, written by its quota_clone plugin through a dict.
-- Keyed by the login name Dovecot uses (the address), with no foreign key: Dovecot
-- writes it on its own schedule and must never fail a delivery over it.
CREATE TABLE portal_quota_usage (
    email varchar(254) PRIMARY KEY,
    bytes bigint NOT NULL DEFAULT 0,
    messages bigint NOT NULL DEFAULT 0
);
