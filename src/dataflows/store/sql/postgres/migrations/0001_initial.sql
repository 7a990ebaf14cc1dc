-- dataflows schema, version 1 (PostgreSQL). Runs with search_path set to the store's schema.
-- Times are seconds since the epoch (double precision), as on SQLite, so rows read the same on
-- both stores. JSON is text except events.data, which is jsonb so waits can prefilter by
-- containment. No foreign keys: purges delete children explicitly, and step inserts stay cheap.

CREATE TABLE runs (
    id               text PRIMARY KEY,
    workflow_id      text NOT NULL,
    status           text NOT NULL,
    event_id         text NOT NULL,
    event_name       text NOT NULL,
    event_data       text NOT NULL,
    event_ts         double precision NOT NULL,
    idempotency_key  text,
    parent_run_id    text,
    parent_step_key  text,
    result           text,
    error            text,
    created_at       double precision NOT NULL,
    updated_at       double precision NOT NULL,
    completed_at     double precision,
    wake_at          double precision,
    wait_reason      text,
    signaled         boolean NOT NULL DEFAULT false,
    lease_owner      text,
    lease_token      bigint NOT NULL DEFAULT 0,
    lease_expires_at double precision,
    recoveries       integer NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX runs_idempotency ON runs (workflow_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_event ON runs (event_id);
CREATE INDEX runs_queued ON runs (created_at) WHERE status = 'queued';
CREATE INDEX runs_waiting ON runs (wake_at) WHERE status = 'waiting';
CREATE INDEX runs_leased ON runs (lease_expires_at) WHERE status = 'running';
CREATE INDEX runs_by_owner ON runs (lease_owner) WHERE status = 'running';
CREATE INDEX runs_created ON runs (created_at, id);
CREATE INDEX runs_workflow ON runs (workflow_id, created_at);
CREATE INDEX runs_finished ON runs (completed_at) WHERE completed_at IS NOT NULL;

-- A step's final outcome. One row per (run, key), never updated: guarantee 1.
CREATE TABLE steps (
    run_id       text NOT NULL,
    step_key     text NOT NULL,
    kind         text NOT NULL,
    status       text NOT NULL,
    output       text,
    error        text,
    attempts     integer NOT NULL,
    event_id     text,
    started_at   double precision NOT NULL,
    completed_at double precision NOT NULL,
    PRIMARY KEY (run_id, step_key)
);
CREATE UNIQUE INDEX steps_consumed ON steps (run_id, event_id) WHERE event_id IS NOT NULL;

-- Failed attempts of steps that will be retried.
CREATE TABLE step_attempts (
    run_id     text NOT NULL,
    step_key   text NOT NULL,
    attempt    integer NOT NULL,
    error      text NOT NULL,
    started_at double precision NOT NULL,
    failed_at  double precision NOT NULL,
    retry_at   double precision NOT NULL,
    PRIMARY KEY (run_id, step_key, attempt)
);

-- Sleeps and event waits that were reached and have not resolved. The deadline is written once.
CREATE TABLE waits (
    run_id       text NOT NULL,
    step_key     text NOT NULL,
    kind         text NOT NULL,
    wake_at      double precision,
    event_name   text,
    filter_paths text,
    filter_key   text,
    created_at   double precision NOT NULL,
    PRIMARY KEY (run_id, step_key)
);
CREATE INDEX waits_match ON waits (event_name, filter_paths, filter_key)
    WHERE event_name IS NOT NULL;

-- The distinct filter shapes waits use per event name, so intake looks up waits by key.
CREATE TABLE wait_shapes (
    event_name   text NOT NULL,
    filter_paths text NOT NULL,
    PRIMARY KEY (event_name, filter_paths)
);

CREATE TABLE events (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          text NOT NULL UNIQUE,
    name        text NOT NULL,
    data        jsonb NOT NULL,
    ts          double precision NOT NULL,
    received_at double precision NOT NULL
);
CREATE INDEX events_name ON events (name, received_at);
-- Containment prefilter for waits with filters (data @> '{"order_id": 7}').
CREATE INDEX events_data ON events USING gin (data jsonb_path_ops);
