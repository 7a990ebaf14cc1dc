-- dataflows schema, version 14 (SQLite): a place in line for runs waiting for a budget.

-- Runs denied a unit of a shared step budget, one row per (run, step), with the time each was
-- told to ask again. A run new to the line is given the time the unit after those promised to
-- the runs ahead of it (rows with wake_at still ahead) frees up, so waiting runs wake one after
-- another as units free instead of all together. Past rows are deleted by later grants.
CREATE TABLE budget_waits (
    budget   TEXT NOT NULL,
    key      TEXT NOT NULL,
    run_id   TEXT NOT NULL,
    step_key TEXT NOT NULL,
    wake_at  REAL NOT NULL,
    PRIMARY KEY (budget, key, run_id, step_key)
);
CREATE INDEX budget_waits_expiry ON budget_waits (wake_at);
