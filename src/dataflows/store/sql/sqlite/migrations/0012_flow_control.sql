-- dataflows schema, version 12 (SQLite): flow control, concurrency limits and priority.

-- A run of a workflow with a concurrency limit carries its key (computed at intake; NULL for a
-- workflow without a limit) and every run a priority (0 unless its workflow sets one). The
-- queued runs of unlimited workflows keep an index of their own; the runs of limited workflows
-- are found through the other three.
ALTER TABLE runs ADD COLUMN concurrency_key TEXT;
ALTER TABLE runs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN start_by REAL;
ALTER TABLE runs ADD COLUMN rate_key TEXT;
DROP INDEX runs_queued;
CREATE INDEX runs_queued ON runs (priority DESC, created_at)
    WHERE status = 'queued' AND concurrency_key IS NULL;
CREATE INDEX runs_held ON runs (workflow_id, concurrency_key, priority DESC, created_at)
    WHERE status = 'queued' AND concurrency_key IS NOT NULL;
CREATE INDEX runs_slots ON runs (workflow_id, concurrency_key)
    WHERE status = 'running' AND concurrency_key IS NOT NULL;
CREATE INDEX runs_keyed_due ON runs (wake_at)
    WHERE status = 'waiting' AND concurrency_key IS NOT NULL;
CREATE INDEX runs_start_by ON runs (start_by) WHERE status = 'queued' AND start_by IS NOT NULL;
CREATE INDEX runs_rate ON runs (workflow_id, rate_key, created_at) WHERE rate_key IS NOT NULL;

-- The concurrency limits of the code, one row per limited workflow, written by workers as they
-- start (the last to start wins in a deploy). A keyed run whose workflow has no row here runs
-- without a limit: the limit was removed.
CREATE TABLE flow_limits (
    workflow_id TEXT PRIMARY KEY,
    concurrency INTEGER NOT NULL,
    updated_at  REAL NOT NULL
);
