-- dataflows schema, version 13 (SQLite): throttles and debounces.

-- A run records when it was first claimed (first_started_at, kept through suspensions and
-- recoveries). A throttled workflow's runs carry its throttle key as their concurrency key
-- (the two limits share the key), and flow_limits its throttle: at most `throttle` runs of a
-- key first claimed within `throttle_period` seconds. A throttle alone is stored with the
-- concurrency 2147483647 (no limit). The claim (queries.sql) enforces it.
ALTER TABLE runs ADD COLUMN first_started_at REAL;
ALTER TABLE flow_limits ADD COLUMN throttle INTEGER;
ALTER TABLE flow_limits ADD COLUMN throttle_period REAL;
CREATE INDEX runs_started ON runs (workflow_id, concurrency_key, first_started_at)
    WHERE concurrency_key IS NOT NULL AND first_started_at IS NOT NULL;

-- A debounced run is created `waiting` (wake_at: when it starts) with its key and the latest it
-- may be pushed back to (debounce_until, NULL without a max_wait). Until it is first claimed,
-- an event with its key gives it its event and pushes it back instead of creating a run.
ALTER TABLE runs ADD COLUMN debounce_key TEXT;
ALTER TABLE runs ADD COLUMN debounce_until REAL;
CREATE INDEX runs_debounce ON runs (workflow_id, debounce_key)
    WHERE status = 'waiting' AND debounce_key IS NOT NULL;
