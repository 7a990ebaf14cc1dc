-- dataflows schema, version 9 (SQLite): schedules, the cron triggers of the code.

-- One row per cron trigger (id "<workflow id>:<n>"), written by each worker as it starts from
-- the code it runs: new triggers are added, removed ones deleted, paused kept. next_at is the
-- first tick not fired yet; a worker that fires ticks moves it on with a compare-and-set, and
-- each tick's run starts from an event whose id names the schedule and the tick, so a tick
-- fired by several workers at once is stored, and run, once.
CREATE TABLE schedules (
    id          TEXT PRIMARY KEY,
    workflow_id TEXT NOT NULL,
    expr        TEXT NOT NULL,
    tz          TEXT NOT NULL,
    catch_up    TEXT NOT NULL,
    next_at     REAL NOT NULL,
    paused      INTEGER NOT NULL DEFAULT 0,
    updated_at  REAL NOT NULL
);
