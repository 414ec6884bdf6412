-- The foreign keys of turns, events and handoffs (to their conversation) and of offers (to
-- their handoff) are no longer checked by the database. Every row that names a conversation
-- is written by the group writer in the transaction that created or claimed that
-- conversation, and an offer in the router step that holds its handoff: the check could not
-- fail, and it cost a lookup and a row lock per row written (PostgreSQL's referential
-- triggers): 8,178-8,184 against 9,047-9,211 turns/s (BENCHMARKS.md, fourteenth session).
-- The store's tests check that no row is left without its parent. SQLite keeps the clauses
-- in its schema but no longer enforces them (`PRAGMA foreign_keys` is off).
ALTER TABLE turns DROP CONSTRAINT IF EXISTS turns_conversation_id_fkey;
ALTER TABLE events DROP CONSTRAINT IF EXISTS events_conversation_id_fkey;
ALTER TABLE handoffs DROP CONSTRAINT IF EXISTS handoffs_conversation_id_fkey;
ALTER TABLE offers DROP CONSTRAINT IF EXISTS offers_handoff_id_fkey;
