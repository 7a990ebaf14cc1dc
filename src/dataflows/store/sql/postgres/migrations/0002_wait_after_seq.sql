-- dataflows schema, version 2 (PostgreSQL): where a pending wait's search for its event resumes.
-- Every event that can still resolve a wait was stored after the wait was registered, so a run
-- woken by an event searches the events after this sequence number, not all since it started.
ALTER TABLE waits ADD COLUMN after_seq bigint NOT NULL DEFAULT 0;
