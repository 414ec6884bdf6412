-- The ETA each handoff promised the visitor (seconds) and whether it was kept (1 or 0; NULL
-- while the handoff is still waiting or when nothing was promised), for the share of
-- promises kept in the summary.
ALTER TABLE handoffs ADD COLUMN eta_promised BIGINT;
ALTER TABLE handoffs ADD COLUMN eta_kept INTEGER;
