-- A decision is stored in the row of the entry it answered (a turn, or an event such as an
-- explicit handoff request), not in a table of its own. The single writer commits every turn;
-- a row and a primary-key entry of its own per decision cost it one more page written per turn
-- (a leaf of the decisions' index, at a random place), on top of the turn's row and index.
ALTER TABLE turns ADD COLUMN action TEXT;
ALTER TABLE turns ADD COLUMN epoch BIGINT;
ALTER TABLE turns ADD COLUMN trigger_id TEXT;
ALTER TABLE turns ADD COLUMN reason TEXT;
ALTER TABLE turns ADD COLUMN policy_hash TEXT;
ALTER TABLE turns ADD COLUMN trace TEXT;
ALTER TABLE events ADD COLUMN action TEXT;
ALTER TABLE events ADD COLUMN epoch BIGINT;
ALTER TABLE events ADD COLUMN trigger_id TEXT;
ALTER TABLE events ADD COLUMN reason TEXT;
ALTER TABLE events ADD COLUMN policy_hash TEXT;
ALTER TABLE events ADD COLUMN trace TEXT;

-- A decision was written with its entry, at the same time, in the same transaction.
UPDATE turns SET action = d.action, epoch = d.epoch, trigger_id = d.trigger_id, reason = d.reason,
    policy_hash = d.policy_hash, trace = d.trace
FROM decisions d WHERE d.conversation_id = turns.conversation_id AND d.seq = turns.seq;
UPDATE events SET action = d.action, epoch = d.epoch, trigger_id = d.trigger_id, reason = d.reason,
    policy_hash = d.policy_hash, trace = d.trace
FROM decisions d WHERE d.conversation_id = events.conversation_id AND d.seq = events.seq;

DROP INDEX decisions_by_action;
DROP TABLE decisions;

-- Decisions counted by action (GET /v1/metrics/summary).
CREATE INDEX turns_by_action ON turns (action) WHERE action IS NOT NULL;
CREATE INDEX events_by_action ON events (action) WHERE action IS NOT NULL;
