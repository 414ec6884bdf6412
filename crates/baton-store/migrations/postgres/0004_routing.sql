-- Routing (SPEC §6): reps, offers, durable timers, the live streams' events, meetings.
-- Times the engine compares are integer milliseconds since the Unix epoch.
CREATE TABLE reps (
    id TEXT PRIMARY KEY,
    attrs TEXT NOT NULL,
    presence TEXT NOT NULL,
    heartbeat_ms BIGINT NOT NULL,
    missed BIGINT NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL
);

-- The router's state of a handoff (route, target, tried reps, its trace), as JSON.
ALTER TABLE handoffs ADD COLUMN routing TEXT NOT NULL DEFAULT '{}';
ALTER TABLE handoffs ADD COLUMN updated_at TEXT NOT NULL DEFAULT '';
CREATE INDEX handoffs_by_state ON handoffs (state);

CREATE TABLE offers (
    id TEXT PRIMARY KEY,
    handoff_id TEXT NOT NULL REFERENCES handoffs(id),
    rep_id TEXT NOT NULL,
    queue TEXT NOT NULL,
    state TEXT NOT NULL,
    offered_ms BIGINT NOT NULL,
    answered_ms BIGINT
);
-- One rep at a time: at most one pending offer per handoff.
CREATE UNIQUE INDEX offers_one_pending ON offers (handoff_id) WHERE state = 'pending';
CREATE INDEX offers_by_rep ON offers (rep_id, state);

CREATE TABLE timers (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    due_ms BIGINT NOT NULL,
    fired_ms BIGINT,
    lease_ms BIGINT
);
CREATE INDEX timers_due ON timers (due_ms) WHERE fired_ms IS NULL;

CREATE TABLE stream_events (
    seq BIGSERIAL PRIMARY KEY,
    stream TEXT NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX stream_events_by_stream ON stream_events (stream, seq);

CREATE TABLE meetings (
    id TEXT PRIMARY KEY,
    handoff_id TEXT NOT NULL,
    rep_id TEXT NOT NULL,
    starts_ms BIGINT NOT NULL,
    ends_ms BIGINT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX meetings_by_rep ON meetings (rep_id, starts_ms);
