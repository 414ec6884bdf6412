-- Events (page views, form fills, custom signals, explicit handoff requests) share the
-- conversation's sequence with turns; a decision row may belong to either.
CREATE TABLE events (
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);

-- Policy versions: one row per content hash; exactly one is active once any was stored.
ALTER TABLE policies ADD COLUMN activated_at TEXT NOT NULL DEFAULT '';
CREATE INDEX decisions_by_action ON decisions (action);
-- The same 0/1 flag as on SQLite, so one set of queries serves both.
ALTER TABLE policies ALTER COLUMN active DROP DEFAULT;
ALTER TABLE policies ALTER COLUMN active TYPE BIGINT USING (CASE WHEN active THEN 1 ELSE 0 END);
ALTER TABLE policies ALTER COLUMN active SET DEFAULT 0;
