-- Expired sign-in counters are swept now and then; keep that sweep an index scan.
CREATE INDEX portal_login_throttle_window_idx ON portal_login_throttle (window_started_at);
