-- The dataflows schema on SQLite as the migrations leave it, in one file to read. The migrations
-- in migrations/ are what a store applies (and records in its `migrations` table, which the store
-- creates itself); a test applies them all to an empty database and checks the result equals
-- this file. Change both together: a new migration, and its result here.
-- Times are seconds since the epoch (REAL). Event intake and claims are statements in
-- queries.sql (PostgreSQL has functions for them; in-process SQLite has no round trips to save).

CREATE TABLE runs (
    id               TEXT PRIMARY KEY,
    workflow_id      TEXT NOT NULL,
    status           TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    event_name       TEXT NOT NULL,
    event_data       TEXT NOT NULL,
    event_ts         REAL NOT NULL,
    idempotency_key  TEXT,
    parent_run_id    TEXT,
    parent_step_key  TEXT,
    result           TEXT,
    error            TEXT,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    completed_at     REAL,
    wake_at          REAL,
    wait_reason      TEXT,
    signaled         INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_token      INTEGER NOT NULL DEFAULT 0,
    lease_expires_at REAL,
    recoveries       INTEGER NOT NULL DEFAULT 0,
    -- flow control: the run's concurrency key (NULL: its workflow has no limit), its priority
    concurrency_key  TEXT,
    priority         INTEGER NOT NULL DEFAULT 0,
    -- a run never claimed by then is cancelled (start_timeout); cleared by its first claim
    start_by         REAL,
    -- the run's rate limit key (NULL: its workflow has no rate limit)
    rate_key         TEXT,
    -- when the run was first claimed (kept through suspensions; a throttle counts these)
    first_started_at REAL,
    -- a debounced run's key, and the latest its start may be pushed back to
    debounce_key     TEXT,
    debounce_until   REAL,
    -- the version of the code the run started with (NULL: started before versions)
    version          text
);
CREATE UNIQUE INDEX runs_idempotency ON runs (workflow_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_event ON runs (event_id);
CREATE INDEX runs_waiting ON runs (wake_at) WHERE status = 'waiting';
CREATE INDEX runs_leased ON runs (lease_expires_at) WHERE status = 'running';
CREATE INDEX runs_by_owner ON runs (lease_owner) WHERE status = 'running';
CREATE INDEX runs_created ON runs (created_at, id);
CREATE INDEX runs_workflow ON runs (workflow_id, created_at);
CREATE INDEX runs_finished ON runs (completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX runs_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;

-- Queued runs of unlimited workflows, in claim order; those of limited ones are runs_held.
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
CREATE INDEX runs_started ON runs (workflow_id, concurrency_key, first_started_at)
    WHERE concurrency_key IS NOT NULL AND first_started_at IS NOT NULL;
CREATE INDEX runs_debounce ON runs (workflow_id, debounce_key)
    WHERE status = 'waiting' AND debounce_key IS NOT NULL;
-- Unfinished runs by id: the deploy check reads them a page at a time.
CREATE INDEX runs_unfinished ON runs (id) WHERE status IN ('queued', 'running', 'waiting');

-- The workers alive now: each holds an exclusive lock on a file of its own beside the database
-- while its process lives. A worker whose file another can lock is removed, and the leases of its
-- running runs end at once. (lock_key, lock_free_since, offered and lease_seconds serve
-- PostgreSQL; 0, NULL, 0 and 30 here.)
CREATE TABLE workers (
    id              TEXT PRIMARY KEY,
    lock_key        INTEGER NOT NULL,
    registered_at   REAL NOT NULL,
    lock_free_since REAL,
    offered         INTEGER NOT NULL DEFAULT 0,
    lease_seconds   REAL NOT NULL DEFAULT 30
);

-- A step's final outcome. One row per (run, key), never updated: guarantee 1.
CREATE TABLE steps (
    run_id       TEXT NOT NULL,
    step_key     TEXT NOT NULL,
    kind         TEXT NOT NULL,
    status       TEXT NOT NULL,
    output       TEXT,
    error        TEXT,
    attempts     INTEGER NOT NULL,
    event_id     TEXT,
    started_at   REAL NOT NULL,
    completed_at REAL NOT NULL,
    PRIMARY KEY (run_id, step_key)
) WITHOUT ROWID;
CREATE UNIQUE INDEX steps_consumed ON steps (run_id, event_id) WHERE event_id IS NOT NULL;
-- The runs an event resumed (a wait step that took it), for the dashboard's events pages.
CREATE INDEX steps_by_event ON steps (event_id) WHERE event_id IS NOT NULL;

-- Failed attempts of steps that will be retried.
CREATE TABLE step_attempts (
    run_id     TEXT NOT NULL,
    step_key   TEXT NOT NULL,
    attempt    INTEGER NOT NULL,
    error      TEXT NOT NULL,
    started_at REAL NOT NULL,
    failed_at  REAL NOT NULL,
    retry_at   REAL NOT NULL,
    PRIMARY KEY (run_id, step_key, attempt)
) WITHOUT ROWID;

-- Sleeps and event waits that were reached and have not resolved. The deadline is written once.
CREATE TABLE waits (
    run_id       TEXT NOT NULL,
    step_key     TEXT NOT NULL,
    kind         TEXT NOT NULL,
    wake_at      REAL,
    event_name   TEXT,
    filter_paths TEXT,
    filter_key   TEXT,
    created_at   REAL NOT NULL,
    -- where a pending wait's search for its event resumes: every event that can still resolve
    -- it was stored after this sequence number
    after_seq    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, step_key)
) WITHOUT ROWID;
CREATE INDEX waits_match ON waits (event_name, filter_paths, filter_key)
    WHERE event_name IS NOT NULL;

-- The distinct filter shapes waits use per event name, so intake looks up waits by key.
CREATE TABLE wait_shapes (
    event_name   TEXT NOT NULL,
    filter_paths TEXT NOT NULL,
    PRIMARY KEY (event_name, filter_paths)
) WITHOUT ROWID;

CREATE TABLE events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    data        TEXT NOT NULL,
    ts          REAL NOT NULL,
    received_at REAL NOT NULL
);
CREATE INDEX events_name ON events (name, received_at);

-- Webhook bodies seen, for sources whose signature covers the body but not the delivery id
-- (digest: SHA-256 of the raw body, hex): the same body again before expires_at is a duplicate
-- of event_id. Intake takes over an expired row and deletes a few others (see queries.sql).
CREATE TABLE webhook_bodies (
    source     TEXT NOT NULL,
    digest     TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    seen_at    REAL NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (source, digest)
) WITHOUT ROWID;
CREATE INDEX webhook_bodies_expiry ON webhook_bodies (expires_at);

-- The cron triggers of the code, one row each ("<workflow id>:<n>"), written by workers as they
-- start; next_at is the first tick not fired yet (moved on by compare-and-set).
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

-- Shared step budgets: one row per unit taken (a sliding log). A unit of (budget, key) is granted
-- while fewer than the budget's limit of its rows have expires_at ahead: returned_at + period
-- once the call has returned, granted_at + 2 * period until then (a worker that died during the
-- call). Takers of one (budget, key) are serialised by BEGIN IMMEDIATE. Expired rows are
-- deleted, a bounded number at a time, by later takers.
CREATE TABLE budget_grants (
    id          INTEGER PRIMARY KEY,
    budget      TEXT NOT NULL,
    key         TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    step_key    TEXT NOT NULL,
    granted_at  REAL NOT NULL,
    returned_at REAL,
    expires_at  REAL NOT NULL
);
CREATE INDEX budget_grants_window ON budget_grants (budget, key, expires_at);
CREATE INDEX budget_grants_expiry ON budget_grants (expires_at);

-- Runs denied a unit of a budget, one row per (run, step), with the time each was told to ask
-- again: a run new to the line is given the unit after those promised to the runs ahead of it
-- (rows with wake_at still ahead). Past rows are deleted by later denials.
CREATE TABLE budget_waits (
    budget   TEXT NOT NULL,
    key      TEXT NOT NULL,
    run_id   TEXT NOT NULL,
    step_key TEXT NOT NULL,
    wake_at  REAL NOT NULL,
    PRIMARY KEY (budget, key, run_id, step_key)
);
CREATE INDEX budget_waits_expiry ON budget_waits (wake_at);

-- The concurrency limits of the code, one row per limited workflow, written by workers as they
-- start (the last to start wins in a deploy). A keyed run whose workflow has no row here runs
-- without a limit: the limit was removed.
CREATE TABLE flow_limits (
    workflow_id     TEXT PRIMARY KEY,
    concurrency     INTEGER NOT NULL,
    updated_at      REAL NOT NULL,
    -- at most `throttle` runs of a key first claimed within `throttle_period` seconds (NULL: no
    -- throttle; a throttle alone has the concurrency 2147483647)
    throttle        INTEGER,
    throttle_period REAL
);

-- Webhook deliveries refused, the newest kept (the dashboard lists them with the reason;
-- a small body is kept, never a secret).
CREATE TABLE webhook_rejections (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    source      TEXT NOT NULL,
    status      INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    body        TEXT,
    body_bytes  INTEGER,
    received_at REAL NOT NULL
);
