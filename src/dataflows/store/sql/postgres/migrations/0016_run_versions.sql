-- dataflows schema: runs record the version of the code they started with (written at their
-- first attempt; NULL for runs started before), and the unfinished runs are listed by id for
-- the deploy check (`dataflows check`), a page at a time.
ALTER TABLE runs ADD COLUMN version text;
CREATE INDEX runs_unfinished ON runs (id) WHERE status IN ('queued', 'running', 'waiting');
