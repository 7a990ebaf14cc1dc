-- dataflows schema, version 10 (SQLite): cancellation.

-- A cancelled run's unfinished children (the runs it invoked) are cancelled with it: found by
-- their parent. (A workflow's cancel_on is a wait of kind 'cancel', resolved by intake in
-- queries.sql: no new table.)
CREATE INDEX runs_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
