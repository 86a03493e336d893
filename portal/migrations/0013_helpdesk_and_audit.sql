-- Helpdesk: why a mailbox was disabled, shown on its lookup page (the audit log
-- keeps the history; this is the current reason, empty while active).
ALTER TABLE virtual_users ADD COLUMN disabled_reason varchar(500) NOT NULL DEFAULT '';

-- The audit log page filters by action too (actor, target and domain have their
-- indexes since 0003), newest first with keyset on (at, id).
CREATE INDEX portal_audit_log_action_idx ON portal_audit_log (action, at DESC, id DESC);
