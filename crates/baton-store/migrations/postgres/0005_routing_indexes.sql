-- Cancelling a handoff's timers and reading a handoff's offers scanned whole tables: under
-- load (the routing benchmark) SQLite spent most of its time in those scans.
CREATE INDEX timers_by_subject ON timers (subject) WHERE fired_ms IS NULL;
CREATE INDEX offers_by_handoff ON offers (handoff_id);
