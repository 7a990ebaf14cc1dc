-- dataflows schema, version 9 (PostgreSQL): schedules, the cron triggers of the code.
-- Runs with search_path set to the store's schema.

-- One row per cron trigger (id "<workflow id>:<n>"), written by each worker as it starts from
-- the code it runs: new triggers are added, removed ones deleted, paused kept. next_at is the
-- first tick not fired yet; a worker that fires ticks moves it on with a compare-and-set, and
-- each tick's run starts from an event whose id names the schedule and the tick, so a tick
-- fired by several workers at once is stored, and run, once.
CREATE TABLE schedules (
    id          text PRIMARY KEY,
    workflow_id text NOT NULL,
    expr        text NOT NULL,
    tz          text NOT NULL,
    catch_up    text NOT NULL,
    next_at     double precision NOT NULL,
    paused      boolean NOT NULL DEFAULT false,
    updated_at  double precision NOT NULL
);
