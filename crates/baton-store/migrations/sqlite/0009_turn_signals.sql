-- A visitor turn's signals as the detectors gave them when it arrived, in Baton's compact
-- binary form (baton-core's `stored` module): a conversation read back decodes them instead
-- of running the detectors over every earlier turn again. NULL for older turns and bot turns.
ALTER TABLE turns ADD COLUMN detected BLOB;
