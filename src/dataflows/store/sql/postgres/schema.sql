-- The dataflows schema on PostgreSQL as the migrations leave it, in one file to read: tables,
-- indexes and the functions event intake and claims call. The migrations in migrations/ are what
-- a store applies (and records in its `migrations` table, which the store creates itself); a test
-- applies them all to an empty schema and checks the result equals this file, functions
-- included. Change both together: a new migration, and its result here.
-- Runs with search_path set to the store's schema. Times are seconds since the epoch (double
-- precision), as on SQLite, so rows read the same on both stores. JSON is text except
-- events.data, which is jsonb so waits can prefilter by containment. No foreign keys: purges
-- delete children explicitly, and step inserts stay cheap.

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
    recoveries       integer NOT NULL DEFAULT 0,
    -- flow control: the run's concurrency key (NULL: its workflow has no limit), its priority
    concurrency_key  text,
    priority         integer NOT NULL DEFAULT 0,
    -- a run never claimed by then is cancelled (start_timeout); cleared by its first claim
    start_by         double precision,
    -- the run's rate limit key (NULL: its workflow has no rate limit)
    rate_key         text,
    -- when the run was first claimed (kept through suspensions; a throttle counts these)
    first_started_at double precision,
    -- a debounced run's key, and the latest its start may be pushed back to
    debounce_key     text,
    debounce_until   double precision,
    -- the version of the code the run started with (NULL: started before versions)
    version          text
);
CREATE UNIQUE INDEX runs_idempotency ON runs (workflow_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_event ON runs (event_id);
-- Queued runs of unlimited workflows, in claim order; those of limited ones are runs_held.
CREATE INDEX runs_queued ON runs (priority DESC, created_at)
    WHERE status = 'queued' AND concurrency_key IS NULL;
CREATE INDEX runs_waiting ON runs (wake_at) WHERE status = 'waiting';
CREATE INDEX runs_leased ON runs (lease_expires_at) WHERE status = 'running';
CREATE INDEX runs_by_owner ON runs (lease_owner) WHERE status = 'running';
CREATE INDEX runs_created ON runs (created_at, id);
CREATE INDEX runs_workflow ON runs (workflow_id, created_at);
CREATE INDEX runs_finished ON runs (completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX runs_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;

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

-- The workers alive now: each holds the advisory lock (the store's namespace, lock_key) on a
-- session of its own while its process lives. A worker whose lock is free (lock_free_since) a
-- moment later is removed, and the leases of its running runs end at once. A worker with
-- nothing to do offers its free slots (offered, and the lease it takes runs under) to event
-- intake in other processes, which claims woken runs for it and sends them in its NOTIFY.
CREATE SEQUENCE worker_lock_keys AS integer MINVALUE 1 CYCLE;
CREATE TABLE workers (
    id              text PRIMARY KEY,
    lock_key        integer NOT NULL,
    registered_at   double precision NOT NULL,
    lock_free_since double precision,
    offered         integer NOT NULL DEFAULT 0,
    lease_seconds   double precision NOT NULL DEFAULT 30
);

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
-- The runs an event resumed (a wait step that took it), for the dashboard's events pages.
CREATE INDEX steps_by_event ON steps (event_id) WHERE event_id IS NOT NULL;

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
    -- where a pending wait's search for its event resumes: every event that can still resolve
    -- it was stored after this sequence number
    after_seq    bigint NOT NULL DEFAULT 0,
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

-- Webhook bodies seen, for sources whose signature covers the body but not the delivery id
-- (digest: SHA-256 of the raw body, hex): the same body again before expires_at is a duplicate
-- of event_id. Intake takes over an expired row and deletes a few others (remember_bodies).
CREATE TABLE webhook_bodies (
    source     text NOT NULL,
    digest     text NOT NULL,
    event_id   text NOT NULL,
    seen_at    double precision NOT NULL,
    expires_at double precision NOT NULL,
    PRIMARY KEY (source, digest)
);
CREATE INDEX webhook_bodies_expiry ON webhook_bodies (expires_at);

-- The cron triggers of the code, one row each ("<workflow id>:<n>"), written by workers as they
-- start; next_at is the first tick not fired yet (moved on by compare-and-set).
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

-- Shared step budgets: one row per unit taken (a sliding log). A unit of (budget, key) is granted
-- while fewer than the budget's limit of its rows have expires_at ahead: returned_at + period
-- once the call has returned, granted_at + 2 * period until then (a worker that died during the
-- call). Takers of one (budget, key) are serialised by an advisory lock. Expired rows are
-- deleted, a bounded number at a time, by later takers.
CREATE TABLE budget_grants (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    budget      text NOT NULL,
    key         text NOT NULL,
    run_id      text NOT NULL,
    step_key    text NOT NULL,
    granted_at  double precision NOT NULL,
    returned_at double precision,
    expires_at  double precision NOT NULL
);
CREATE INDEX budget_grants_window ON budget_grants (budget, key, expires_at);
CREATE INDEX budget_grants_expiry ON budget_grants (expires_at);

-- Runs denied a unit of a budget, one row per (run, step), with the time each was told to ask
-- again: a run new to the line is given the unit after those promised to the runs ahead of it
-- (rows with wake_at still ahead). Past rows are deleted by later denials.
CREATE TABLE budget_waits (
    budget   text NOT NULL,
    key      text NOT NULL,
    run_id   text NOT NULL,
    step_key text NOT NULL,
    wake_at  double precision NOT NULL,
    PRIMARY KEY (budget, key, run_id, step_key)
);
CREATE INDEX budget_waits_expiry ON budget_waits (wake_at);

-- The concurrency limits of the code, one row per limited workflow, written by workers as they
-- start (the last to start wins in a deploy). A keyed run whose workflow has no row here runs
-- without a limit: the limit was removed.
CREATE TABLE flow_limits (
    workflow_id     text PRIMARY KEY,
    concurrency     integer NOT NULL,
    updated_at      double precision NOT NULL,
    -- at most `throttle` runs of a key first claimed within `throttle_period` seconds (NULL: no
    -- throttle; a throttle alone has the concurrency 2147483647)
    throttle        integer,
    throttle_period double precision
);

-- == Functions ====================================================================================

-- The members of an array or object, each made canonical (see canonical_jsonb, which calls this;
-- PL/pgSQL, so the two can call each other). An array, such as the filter values of every wait,
-- by simple expressions, without a query.
CREATE FUNCTION canonical_members(v jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    members jsonb := '[]';
BEGIN
    IF jsonb_typeof(v) = 'array' THEN
        FOR i IN 0 .. jsonb_array_length(v) - 1 LOOP
            members := members || jsonb_build_array(canonical_jsonb(v -> i));
        END LOOP;
        RETURN members;
    END IF;
    RETURN (SELECT coalesce(jsonb_object_agg(x.key, canonical_jsonb(x.value)), '{}')
            FROM jsonb_each(v) AS x);
END
$$;

-- A wait key is canonical_jsonb(its filter values, in filter path order)::text. jsonb orders
-- object members and spaces its text one way for every value; numbers lose trailing zeros here,
-- so 1 and 1.0 are one key, at any depth. Plain SQL, so the planner inlines it: a scalar costs
-- no function call.
CREATE FUNCTION canonical_jsonb(v jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE jsonb_typeof(v)
           WHEN 'number' THEN trim_scale(v::numeric)::text::jsonb
           WHEN 'array' THEN canonical_members(v)
           WHEN 'object' THEN canonical_members(v)
           ELSE v END
$$;

-- The key an event's data has for a filter shape (p_paths: a JSON list of "data.a.b" paths), or
-- NULL if a path leads nowhere. Paths follow object members only, as the engine's own matching
-- does: a step into an array, a string or a number finds nothing (a JSON null is found). The
-- key is the array of the values found, each canonical: canonical_jsonb of that array. Simple
-- expressions only, no queries: intake calls this for every event and filter shape.
CREATE FUNCTION wait_key(p_data jsonb, p_paths text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    paths jsonb := p_paths::jsonb;
    parts text[];
    node jsonb;
    found jsonb := '[]';
BEGIN
    FOR i IN 0 .. jsonb_array_length(paths) - 1 LOOP
        parts := string_to_array(paths ->> i, '.');
        IF parts[1] IS DISTINCT FROM 'data' THEN
            RETURN NULL;
        END IF;
        node := p_data;
        FOR j IN 2 .. cardinality(parts) LOOP
            IF jsonb_typeof(node) <> 'object' OR NOT node ? parts[j] THEN
                RETURN NULL;
            END IF;
            node := node -> parts[j];
        END LOOP;
        found := found || jsonb_build_array(canonical_jsonb(node));
    END LOOP;
    RETURN found::text;
END
$$;

-- The advisory locks intake and waits share, named once, here, so both always name a lock alike
-- (with the schema, so stores sharing a database do not contend). An event name's lock: intake
-- holds it shared, a wait registering a new filter shape for the name exclusive.
CREATE FUNCTION event_name_lock(p_event_name text) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT hashtextextended(current_schema() || jsonb_build_array('event', p_event_name)::text, 0)
$$;

-- A wait key's lock: intake and a wait with that key hold it exclusive.
CREATE FUNCTION wait_key_lock(p_event_name text, p_paths text, p_key text) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT hashtextextended(
        current_schema() || jsonb_build_array('wait', p_event_name, p_paths, p_key)::text, 0)
$$;

-- A concurrency key's slot lock: a claim taking slots of the key holds it (tried, never waited
-- for), so two claims never both count a slot free.
CREATE FUNCTION concurrency_lock(p_workflow_id text, p_key text) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT hashtextextended(
        current_schema() || jsonb_build_array('concurrency', p_workflow_id, p_key)::text, 0)
$$;

-- A rate limit key's lock: intake holds it while it counts the key's recent runs.
CREATE FUNCTION rate_lock(p_workflow_id text, p_key text) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT hashtextextended(
        current_schema() || jsonb_build_array('rate', p_workflow_id, p_key)::text, 0)
$$;

-- Before several events resolve waits in one transaction: every run they may touch, locked in id
-- order at once (each resolve_waits alone orders only its own runs). keys: [[name, paths, key]].
CREATE FUNCTION lock_waiting_runs(p_keys jsonb) RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    SELECT count(*) FROM (
        SELECT r.id FROM runs r
        WHERE r.id = ANY (ARRAY(
                  SELECT w.run_id
                  FROM jsonb_array_elements(p_keys) AS k
                  CROSS JOIN LATERAL (
                      SELECT x.run_id FROM waits x
                      WHERE x.event_name = k.value ->> 0 AND x.filter_paths = k.value ->> 1
                        AND x.filter_key = k.value ->> 2
                      OFFSET 0  -- as in resolve_waits
                  ) AS w))
        ORDER BY r.id
        FOR UPDATE
    ) AS locked
$$;

-- Intake's locks, taken before it touches a row, and the wait keys its events match: per event,
-- in order, [[filter paths, key]]. First every event name's lock, shared: no wait registers a
-- new filter shape for those names until commit, so the shapes read next (a new statement of a
-- VOLATILE function: a snapshot taken after the locks were granted) are all there are. Then,
-- exclusive, the lock of every key the events match: a wait with one of those keys either
-- committed before (intake sees and resolves it) or registers after this commits (its search
-- sees the event). Waits on other keys go on in parallel. Names before keys, each set sorted,
-- so lockers cannot deadlock; a batch then locks the runs waiting on its keys, in id order.
-- p_events: [{name, data}, ...].
CREATE FUNCTION lock_intake(p_events jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    keys jsonb;
    matched bigint;
BEGIN
    -- DISTINCT keeps the subquery whole, so the locks are taken in its order.
    PERFORM pg_advisory_xact_lock_shared(l.id)
    FROM (SELECT DISTINCT event_name_lock(x ->> 'name') AS id
          FROM jsonb_array_elements(p_events) AS x ORDER BY 1) AS l;
    SELECT jsonb_agg(coalesce(m.keys, '[]') ORDER BY e.n), count(m.keys) INTO keys, matched
    FROM jsonb_array_elements(p_events) WITH ORDINALITY AS e(x, n)
    LEFT JOIN LATERAL (
        SELECT jsonb_agg(jsonb_build_array(s.filter_paths, k.key)) AS keys
        FROM wait_shapes s
        CROSS JOIN LATERAL wait_key(e.x -> 'data', s.filter_paths) AS k(key)
        WHERE s.event_name = e.x ->> 'name' AND k.key IS NOT NULL
    ) AS m ON true;
    IF matched > 0 THEN
        PERFORM pg_advisory_xact_lock(l.id)
        FROM (SELECT DISTINCT wait_key_lock(e.x ->> 'name', k.value ->> 0, k.value ->> 1) AS id
              FROM jsonb_array_elements(p_events) WITH ORDINALITY AS e(x, n)
              CROSS JOIN LATERAL jsonb_array_elements(keys -> (e.n::integer - 1)) AS k
              ORDER BY 1) AS l;
        IF jsonb_array_length(p_events) > 1 THEN
            -- Several events may resolve waits of the same runs: lock those runs in one order.
            PERFORM lock_waiting_runs((
                SELECT jsonb_agg(jsonb_build_array(e.x ->> 'name', k.value ->> 0, k.value ->> 1))
                FROM jsonb_array_elements(p_events) WITH ORDINALITY AS e(x, n)
                CROSS JOIN LATERAL jsonb_array_elements(keys -> (e.n::integer - 1)) AS k));
        END IF;
    END IF;
    RETURN keys;
END
$$;

-- Cancel runs and, recursively, their unfinished children, in one statement each level: the
-- runs' waits go. p_error: the error stored on the roots; their descendants get "the parent run
-- was cancelled". Each level's runs are locked in id order, as every multi-row writer does.
-- Returns the ids cancelled, roots first.
CREATE FUNCTION cancel_run_trees(p_ids text[], p_error text, p_now double precision)
RETURNS text[]
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    level text[];
    done text[] := '{}';
    child_error text := '{"type": "Cancelled", "message": "the parent run was cancelled"}';
BEGIN
    WITH cancelled AS (
        UPDATE runs
        SET status = 'cancelled', completed_at = p_now, updated_at = p_now, wake_at = NULL,
            wait_reason = NULL, signaled = false, lease_owner = NULL, lease_expires_at = NULL,
            error = p_error
        WHERE id = ANY (p_ids) AND status IN ('queued', 'running', 'waiting')
        RETURNING id
    )
    SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO level FROM cancelled;
    WHILE cardinality(level) > 0 LOOP
        done := done || level;
        DELETE FROM waits WHERE run_id = ANY (level);
        WITH cancelled AS (
            UPDATE runs
            SET status = 'cancelled', completed_at = p_now, updated_at = p_now, wake_at = NULL,
                wait_reason = NULL, signaled = false, lease_owner = NULL,
                lease_expires_at = NULL, error = child_error
            WHERE id IN (SELECT x.id FROM runs x
                         WHERE x.parent_run_id = ANY (level)
                           AND x.status IN ('queued', 'running', 'waiting')
                         ORDER BY x.id
                         FOR UPDATE)
              AND status IN ('queued', 'running', 'waiting')
            RETURNING id
        )
        SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO level FROM cancelled;
    END LOOP;
    RETURN done;
END
$$;

-- The waits an event resolves (by its wait keys; the caller holds their locks) get their step
-- recorded, so the woken run replays straight past them. Each run takes the event once
-- (steps_consumed): its wait reached first, whatever the keys. Runs are locked in id order first,
-- so intakes resolving waits of the same runs cannot deadlock; a run finished meanwhile is left
-- out. resumed: the ids of the runs whose waits it resolved, sorted.
-- A wait of kind 'cancel' (a workflow's cancel_on, registered when its run is first claimed)
-- cancels its run instead of resuming it: the run and its unfinished children are cancelled
-- (cancel_run_trees) in the same transaction, and the run is not among those resumed.
-- cancelled: the ids of every run cancelled so, children included (the caller wakes workers,
-- as a cancel by a call does). Each of them that a parent invoked sends it run.finished, as
-- when a run is cancelled by a call (store_events, under lock_intake's locks).
CREATE FUNCTION resolve_waits(
    p_event_name text, p_keys jsonb, p_event_id text, p_output text, p_now double precision,
    OUT resumed text[], OUT cancelled text[]
)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    cancelling text[];
    v_error text;
    finished jsonb;
BEGIN
    cancelled := '{}';
    WITH matching AS (
        -- LATERAL: one index lookup per key (waits_match), never a scan of all waits of the name
        SELECT w.run_id, w.step_key, w.kind, w.created_at
        FROM jsonb_array_elements(p_keys) AS k
        CROSS JOIN LATERAL (
            SELECT x.run_id, x.step_key, x.kind, x.created_at FROM waits x
            WHERE x.event_name = p_event_name AND x.filter_paths = k.value ->> 0
              AND x.filter_key = k.value ->> 1
            OFFSET 0  -- kept a subquery: pulled up, it would become a hash join over every wait
        ) AS w
    ), locked AS (
        SELECT r.id FROM runs r
        WHERE r.id = ANY (ARRAY(SELECT run_id FROM matching))
          AND r.status IN ('waiting', 'running', 'queued')
        ORDER BY r.id
        FOR UPDATE
    ), recorded AS (
        INSERT INTO steps (run_id, step_key, kind, status, output, error, attempts, event_id,
                           started_at, completed_at)
        SELECT m.run_id, m.step_key, m.kind, 'completed', p_output, NULL, 1, p_event_id,
               m.created_at, p_now
        FROM matching m WHERE m.run_id = ANY (ARRAY(SELECT id FROM locked))
        ORDER BY m.run_id, m.created_at, m.step_key
        ON CONFLICT DO NOTHING
        RETURNING run_id, step_key, kind
    ), cleared AS (
        -- = ANY (ARRAY(...)): an index lookup per run, where a join would be planned as a scan
        DELETE FROM waits x
        WHERE x.run_id = ANY (ARRAY(SELECT run_id FROM recorded))
          AND (x.run_id, x.step_key) IN (SELECT run_id, step_key FROM recorded)
    ), woke AS (
        -- Not read, but run to completion all the same, as every data-modifying WITH is.
        UPDATE runs r
        SET status = CASE WHEN r.status = 'waiting' THEN 'queued' ELSE r.status END,
            wake_at = CASE WHEN r.status = 'waiting' THEN NULL ELSE r.wake_at END,
            signaled = r.signaled OR r.status = 'running',
            updated_at = p_now
        WHERE r.id = ANY (ARRAY(SELECT run_id FROM recorded))
          AND r.id <> ALL (ARRAY(SELECT run_id FROM recorded WHERE kind = 'cancel'))
          AND r.status IN ('waiting', 'running')
    )
    SELECT coalesce(array_agg(DISTINCT run_id ORDER BY run_id)
                        FILTER (WHERE run_id NOT IN (SELECT run_id FROM recorded
                                                     WHERE kind = 'cancel')), '{}'),
           coalesce(array_agg(DISTINCT run_id ORDER BY run_id) FILTER (WHERE kind = 'cancel'),
                    '{}')
    INTO resumed, cancelling FROM recorded;
    IF cardinality(cancelling) > 0 THEN
        v_error := jsonb_build_object('type', 'Cancelled',
                                    'message', 'cancelled by event ' || p_event_id
                                               || ' (' || p_event_name || ')')::text;
        cancelled := cancel_run_trees(cancelling, v_error, p_now);
        -- Each cancelled run that a parent invoked (the children cancelled with a run too)
        -- tells it, as a finished child does: the run.finished event with the run's error,
        -- taken in by the same functions as any event.
        SELECT jsonb_agg(x.ev || jsonb_build_object('now', p_now, 'runs', '[]'::jsonb,
                                                    'output', x.ev::text)
                         ORDER BY x.id)
        INTO finished
        FROM (SELECT r.id,
                     jsonb_build_object(
                         'id', r.id || ':finished:' || p_now::text,
                         'name', 'dataflows/run.finished',
                         'data', jsonb_build_object('run_id', r.id,
                                                    'workflow_id', r.workflow_id,
                                                    'status', 'cancelled', 'result', NULL,
                                                    'error', r.error::jsonb),
                         'ts', p_now) AS ev
              FROM runs r
              WHERE r.id = ANY (cancelled) AND r.parent_run_id IS NOT NULL) AS x;
        IF finished IS NOT NULL THEN
            PERFORM store_events(finished, lock_intake(finished));
        END IF;
    END IF;
END
$$;

-- Intake's record of webhook bodies signed without their delivery id. p_events: intake's
-- events; those with "body": {source, digest, window} are remembered, one row per (source,
-- digest), in that order, so concurrent intakes lock the rows alike and cannot deadlock on them.
-- A new body's row is this event's until now + window; a row past its expiry is taken over;
-- a row still in its window is kept, and locked until commit, so a concurrent intake of the same
-- body waits here and then finds it. Returns {"source/digest": the event id the body belongs
-- to}. Then up to two expired rows per body are deleted, oldest first: the table holds about the
-- bodies still in their window.
CREATE FUNCTION remember_bodies(p_events jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    firsts jsonb;
    bodies bigint;
    expired record;
BEGIN
    WITH remembered AS (
        INSERT INTO webhook_bodies AS b (source, digest, event_id, seen_at, expires_at)
        SELECT DISTINCT ON (x #>> '{body,source}', x #>> '{body,digest}')
               x #>> '{body,source}', x #>> '{body,digest}', x ->> 'id',
               (x ->> 'now')::double precision,
               (x ->> 'now')::double precision + (x #>> '{body,window}')::double precision
        FROM jsonb_array_elements(p_events) WITH ORDINALITY AS e(x, n)
        WHERE x ? 'body'
        ORDER BY x #>> '{body,source}', x #>> '{body,digest}', n
        ON CONFLICT (source, digest) DO UPDATE SET
            event_id = CASE WHEN b.expires_at <= excluded.seen_at
                            THEN excluded.event_id ELSE b.event_id END,
            seen_at = CASE WHEN b.expires_at <= excluded.seen_at
                           THEN excluded.seen_at ELSE b.seen_at END,
            expires_at = CASE WHEN b.expires_at <= excluded.seen_at
                              THEN excluded.expires_at ELSE b.expires_at END
        RETURNING b.source, b.digest, b.event_id
    )
    SELECT jsonb_object_agg(r.source || '/' || r.digest, r.event_id), count(*)
    INTO firsts, bodies
    FROM remembered AS r;
    -- Row by row through the primary key: a join with the expired rows could be planned as a
    -- scan of the whole table. None expired (the usual case): one probe of the expiry index.
    FOR expired IN
        SELECT x.source, x.digest FROM webhook_bodies AS x
        WHERE x.expires_at <= (SELECT max((y ->> 'now')::double precision)
                               FROM jsonb_array_elements(p_events) AS y)
        ORDER BY x.expires_at LIMIT 2 * bodies
        FOR UPDATE SKIP LOCKED
    LOOP
        DELETE FROM webhook_bodies AS b
        WHERE b.source = expired.source AND b.digest = expired.digest;
    END LOOP;
    RETURN coalesce(firsts, '{}');
END
$$;

-- Store events, start their runs and resolve the waits they match, under lock_intake's locks
-- (p_keys: what it answered for p_events). p_events: [{id, name, data, ts, now, output (a wait
-- step's output), runs: [insert_run parameters], body (optional, see remember_bodies)}]. An
-- event whose body belongs to another event that is still stored is a duplicate of that one.
-- Returns {"results": [{"duplicate": true, "id": the event it duplicates, "runs": [that event's
-- runs]} or {"duplicate": false, "resumed": [run ids], "runs": [the runs it created: a run
-- whose idempotency key is taken is not]}], "work": bool, "cancels": bool}, "work" meaning it
-- started runs, resumed some or cancelled some (the caller wakes workers), "cancels" that it
-- cancelled some (the caller wakes every worker, also one it claimed runs for).
CREATE FUNCTION store_events(p_events jsonb, p_keys jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    e jsonb;
    n bigint;
    keys jsonb;
    inserted integer;
    resumed text[];
    cancelled text[];
    work boolean := false;
    cancels boolean := false;
    answers jsonb[] := '{}';
    -- Whether the batch has rate-limited runs, and debounced ones (else their checks are skipped).
    rated boolean := jsonb_path_exists(p_events, '$[*].runs[*].rate_limit ? (@ != null)');
    debouncing boolean :=
        jsonb_path_exists(p_events, '$[*].runs[*].debounce_period ? (@ != null)');
    firsts jsonb := '{}';
    created jsonb;
    dropped jsonb;
    debounced jsonb;
    v_id text;
BEGIN
    IF jsonb_path_exists(p_events, '$[*].body') THEN
        firsts := remember_bodies(p_events);
    END IF;
    -- Rate-limited runs (rate_limit set): their keys' locks, all at once and in order, so
    -- intakes counting the same keys serialise and cannot deadlock.
    IF rated THEN
        PERFORM pg_advisory_xact_lock(l.id)
        FROM (SELECT DISTINCT rate_lock(r ->> 'workflow_id', r ->> 'rate_key') AS id
              FROM jsonb_array_elements(p_events) AS x
              CROSS JOIN LATERAL jsonb_array_elements(x -> 'runs') AS r
              WHERE r ->> 'rate_limit' IS NOT NULL ORDER BY 1) AS l;
    END IF;
    -- Debounced runs: their keys' locks, likewise, so that two intakes never both create a
    -- key's pending run.
    IF debouncing THEN
        PERFORM pg_advisory_xact_lock(l.id)
        FROM (SELECT DISTINCT hashtextextended(current_schema() || jsonb_build_array(
                  'debounce', r ->> 'workflow_id', r ->> 'debounce_key')::text, 0) AS id
              FROM jsonb_array_elements(p_events) AS x
              CROSS JOIN LATERAL jsonb_array_elements(x -> 'runs') AS r
              WHERE r ->> 'debounce_period' IS NOT NULL ORDER BY 1) AS l;
    END IF;
    FOR e, n IN SELECT x.value, x.n FROM jsonb_array_elements(p_events) WITH ORDINALITY AS x(value, n)
    LOOP
        v_id := e ->> 'id';
        IF e ? 'body' THEN
            v_id := firsts ->> ((e #>> '{body,source}') || '/' || (e #>> '{body,digest}'));
            IF v_id <> e ->> 'id' AND NOT EXISTS (SELECT 1 FROM events WHERE id = v_id) THEN
                -- The body's event was purged (a retention shorter than the window): the body
                -- is this event's now.
                UPDATE webhook_bodies
                SET event_id = e ->> 'id', seen_at = (e ->> 'now')::double precision,
                    expires_at = (e ->> 'now')::double precision
                                 + (e #>> '{body,window}')::double precision
                WHERE source = e #>> '{body,source}' AND digest = e #>> '{body,digest}';
                v_id := e ->> 'id';
            END IF;
        END IF;
        inserted := 0;
        created := '[]';
        dropped := '[]';
        debounced := '{}';
        IF v_id = e ->> 'id' THEN
            INSERT INTO events (id, name, data, ts, received_at)
            VALUES (e ->> 'id', e ->> 'name', e -> 'data', (e ->> 'ts')::double precision,
                    (e ->> 'now')::double precision)
            ON CONFLICT (id) DO NOTHING;
            GET DIAGNOSTICS inserted = ROW_COUNT;
        END IF;
        IF inserted = 0 THEN
            answers := array_append(answers, jsonb_build_object(
                'duplicate', true,
                'id', v_id,
                'runs', (SELECT coalesce(jsonb_agg(r.id ORDER BY r.created_at, r.id), '[]')
                         FROM runs r
                         WHERE r.event_id = v_id AND r.parent_run_id IS NULL)));
            CONTINUE;
        END IF;
        IF jsonb_array_length(e -> 'runs') > 0 THEN
            -- A rate-limited run whose key started its limit of runs within the period (runs
            -- created before it in this transaction included) is not created.
            IF rated THEN
                SELECT coalesce(jsonb_agg(r.id), '[]') INTO dropped
                FROM jsonb_to_recordset(e -> 'runs') AS r(
                         id text, workflow_id text, rate_key text, rate_limit integer,
                         rate_period double precision, now double precision)
                WHERE r.rate_limit IS NOT NULL
                  AND (SELECT count(*) FROM runs o
                       WHERE o.workflow_id = r.workflow_id AND o.rate_key = r.rate_key
                         AND o.created_at > r.now - r.rate_period) >= r.rate_limit;
            END IF;
            IF debouncing AND jsonb_path_exists(e, '$.runs[*].debounce_period ? (@ != null)') THEN
                -- A debounced run whose key has a pending run (waiting for its period, never
                -- started) is not created: the pending run takes its event and is pushed back
                -- to a period from now, at most to its debounce_until.
                WITH pending AS (
                    UPDATE runs o
                    SET event_id = r.event_id, event_name = r.event_name,
                        event_data = r.event_data, event_ts = r.event_ts,
                        wake_at = least(r.now + r.debounce_period, o.debounce_until),
                        updated_at = r.now
                    FROM jsonb_to_recordset(e -> 'runs') AS r(
                             id text, workflow_id text, event_id text, event_name text,
                             event_data text, event_ts double precision, now double precision,
                             debounce_key text, debounce_period double precision)
                    WHERE r.debounce_period IS NOT NULL AND NOT dropped ? r.id
                      AND o.status = 'waiting' AND o.first_started_at IS NULL
                      AND o.workflow_id = r.workflow_id AND o.debounce_key = r.debounce_key
                    RETURNING r.id, o.id AS pending_id
                )
                SELECT coalesce(jsonb_object_agg(p.id, p.pending_id), '{}') INTO debounced
                FROM pending AS p;
            END IF;
            IF e ? 'expire_keys' THEN
                -- Idempotency keys past their window are given up (runs with a window only).
                UPDATE runs o SET idempotency_key = NULL
                FROM jsonb_to_recordset(e -> 'runs') AS r(
                         workflow_id text, idempotency_key text,
                         idempotency_window double precision, now double precision)
                WHERE r.idempotency_window IS NOT NULL AND o.workflow_id = r.workflow_id
                  AND o.idempotency_key = r.idempotency_key
                  AND o.created_at <= r.now - r.idempotency_window;
            END IF;
            WITH inserted AS (
            INSERT INTO runs (id, workflow_id, status, event_id, event_name, event_data, event_ts,
                              idempotency_key, parent_run_id, parent_step_key, created_at,
                              updated_at, concurrency_key, priority, start_by, rate_key,
                              wake_at, wait_reason, debounce_key, debounce_until)
            SELECT r.id, r.workflow_id,
                   CASE WHEN r.debounce_period IS NULL THEN 'queued' ELSE 'waiting' END,
                   r.event_id, r.event_name, r.event_data,
                   r.event_ts, r.idempotency_key, r.parent_run_id, r.parent_step_key, r.now, r.now,
                   r.concurrency_key, coalesce(r.priority, 0), r.now + r.start_timeout, r.rate_key,
                   r.now + r.debounce_period,
                   CASE WHEN r.debounce_period IS NOT NULL
                        THEN 'debounce ' || r.workflow_id
                             || CASE WHEN r.debounce_key = '' THEN '' ELSE '/' || r.debounce_key END
                   END,
                   r.debounce_key, r.now + r.debounce_max_wait
            FROM jsonb_to_recordset(e -> 'runs') AS r(
                     id text, workflow_id text, event_id text, event_name text, event_data text,
                     event_ts double precision, idempotency_key text, parent_run_id text,
                     parent_step_key text, now double precision, concurrency_key text,
                     priority integer, start_timeout double precision, rate_key text,
                     debounce_key text, debounce_period double precision,
                     debounce_max_wait double precision)
            WHERE NOT dropped ? r.id AND NOT debounced ? r.id
            ON CONFLICT DO NOTHING
            RETURNING runs.id
            )
            SELECT coalesce(jsonb_agg(i.id), '[]') INTO created FROM inserted AS i;
            work := work OR jsonb_array_length(created) > 0;
        END IF;
        keys := p_keys -> (n::integer - 1);
        resumed := '{}';
        IF jsonb_array_length(keys) > 0 THEN
            SELECT w.resumed, w.cancelled INTO resumed, cancelled
            FROM resolve_waits(e ->> 'name', keys, e ->> 'id', e ->> 'output',
                               (e ->> 'now')::double precision) AS w;
            cancels := cancels OR cardinality(cancelled) > 0;
            work := work OR cardinality(resumed) > 0 OR cancels;
        END IF;
        answers := array_append(answers, jsonb_build_object(
            'duplicate', false, 'resumed', to_jsonb(resumed), 'runs', created,
            'rate_limited', dropped, 'debounced', debounced));
    END LOOP;
    RETURN jsonb_build_object('results', to_jsonb(answers), 'work', work, 'cancels', cancels);
END
$$;

-- A worker's claim, as a function so that event intake can claim in its own transaction too
-- (eager dispatch: the run an event wakes goes to a worker of the sending process without a
-- further round trip).
-- One locking scan per partial index, in that index's order so that a backlog of due timers
-- or expired leases is never sorted whole (FOR UPDATE is not allowed in a UNION). Rows other
-- workers hold, or that a fenced write holds FOR SHARE, are skipped, never waited for. Of the
-- candidates those of highest priority, then the oldest, win; the others are unlocked at
-- commit, a moment later.
-- A queued run past its start_by is never claimed (a worker cancels it: cancel_unstarted).
-- Runs of workflows with a concurrency limit (concurrency_key set) are taken only while their
-- key has a free slot: first, their due timers turn them back to queued (a suspended run holds
-- no slot); then, per key with queued runs and, as committed now, a free slot, by its best
-- priority and oldest run: the key's slot lock, tried, never waited for (a claim that holds it
-- takes the slots; the key is skipped here), the running runs counted under it (a claim that
-- took slots of the key committed before the lock was granted, and this statement sees it),
-- and up to that many free slots' runs locked. Without such runs both cost a probe of an empty
-- partial index (runs_keyed_due, runs_held): the runs of other workflows are claimed as before.
-- The claimed runs' sleeps that are due are recorded as elapsed in the same statement, and each
-- claimed run comes back with its history (one row per recorded step, retried step or pending
-- wait; one row of NULLs if it has none), so a run resumes after one round trip. The history
-- reads the statement's snapshot, which the sleeps recorded here are not part of: they are
-- added from the INSERT's RETURNING, and their waits left out.
-- Its statements are planned once per session, for any arguments (force_generic_plan): a plan
-- made for each of a session's first five calls, as PL/pgSQL does by default, took 0.7-1.4 ms
-- per call (a call on a ready plan with nothing to claim: 0.1 ms), and a worker's pooled
-- sessions make few claims each.
CREATE FUNCTION claim_runs(
    p_worker text, p_limit integer, p_lease_until double precision, p_now double precision
) RETURNS TABLE (
    id text, workflow_id text, event_id text, event_name text, event_data text,
    event_ts double precision, created_at double precision, lease_token bigint,
    recoveries integer, parent_run_id text, step_key text, kind text, status text,
    output text, error text, attempts integer, started_at double precision,
    completed_at double precision, wake_at double precision, step_event_id text
)
LANGUAGE plpgsql VOLATILE SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
    limited text[] := '{}';
    slot record;
    free bigint;
    starts bigint;
BEGIN
    -- Rows another transaction holds are skipped, never waited for (the next claim takes them).
    UPDATE runs SET status = 'queued', wake_at = NULL, updated_at = p_now
    WHERE id IN (SELECT r.id FROM runs r
                 WHERE r.status = 'waiting' AND r.concurrency_key IS NOT NULL
                   AND r.wake_at <= p_now
                 FOR UPDATE SKIP LOCKED);
    IF EXISTS (SELECT 1 FROM runs WHERE status = 'queued' AND concurrency_key IS NOT NULL) THEN
        FOR slot IN
            SELECT q.workflow_id, q.concurrency_key, coalesce(l.concurrency, 2147483647) AS size,
                   l.throttle, l.throttle_period
            FROM (SELECT workflow_id, concurrency_key, max(priority) AS top,
                         min(created_at) AS oldest, bool_or(first_started_at IS NOT NULL) AS resumed
                  FROM runs WHERE status = 'queued' AND concurrency_key IS NOT NULL
                  GROUP BY workflow_id, concurrency_key) AS q
            LEFT JOIN flow_limits l ON l.workflow_id = q.workflow_id
            WHERE coalesce(l.concurrency, 2147483647) > (
                SELECT count(*) FROM runs r
                WHERE r.status = 'running' AND r.workflow_id = q.workflow_id
                  AND r.concurrency_key = q.concurrency_key)
              AND (l.throttle IS NULL OR q.resumed OR l.throttle > (
                SELECT count(*) FROM runs r
                WHERE r.workflow_id = q.workflow_id AND r.concurrency_key = q.concurrency_key
                  AND r.first_started_at > p_now - l.throttle_period))
            ORDER BY q.top DESC, q.oldest
        LOOP
            EXIT WHEN cardinality(limited) >= p_limit;
            CONTINUE WHEN NOT pg_try_advisory_xact_lock(
                concurrency_lock(slot.workflow_id, slot.concurrency_key));
            free := least(slot.size - (
                SELECT count(*) FROM runs r
                WHERE r.status = 'running' AND r.workflow_id = slot.workflow_id
                  AND r.concurrency_key = slot.concurrency_key), p_limit - cardinality(limited));
            IF free > 0 AND slot.throttle IS NOT NULL THEN
                -- A throttled key: of its runs never started, only as many as the window has
                -- starts left (the key's first claims within the last throttle_period, counted
                -- under the lock), oldest first; runs that started before (woken from a sleep,
                -- released by a worker) take their slot freely.
                starts := slot.throttle - (
                    SELECT count(*) FROM runs r
                    WHERE r.workflow_id = slot.workflow_id
                      AND r.concurrency_key = slot.concurrency_key
                      AND r.first_started_at > p_now - slot.throttle_period);
                limited := limited || ARRAY(
                    SELECT r.id FROM runs r
                    WHERE r.status = 'queued' AND r.id IN (
                        SELECT c.id FROM (
                            SELECT q.id, q.first_started_at,
                                   row_number() OVER (PARTITION BY q.first_started_at IS NULL
                                                      ORDER BY q.priority DESC, q.created_at) AS n
                            FROM runs q
                            WHERE q.status = 'queued' AND q.workflow_id = slot.workflow_id
                              AND q.concurrency_key = slot.concurrency_key
                              AND (q.start_by IS NULL OR q.start_by > p_now)) AS c
                        WHERE c.first_started_at IS NOT NULL OR c.n <= starts)
                    ORDER BY r.priority DESC, r.created_at
                    LIMIT free FOR UPDATE SKIP LOCKED);
            ELSIF free > 0 THEN
                limited := limited || ARRAY(
                    SELECT r.id FROM runs r
                    WHERE r.status = 'queued' AND r.workflow_id = slot.workflow_id
                      AND r.concurrency_key = slot.concurrency_key
                      AND (r.start_by IS NULL OR r.start_by > p_now)
                    ORDER BY r.priority DESC, r.created_at
                    LIMIT free FOR UPDATE SKIP LOCKED);
            END IF;
        END LOOP;
    END IF;
    RETURN QUERY
        WITH queued AS (
            SELECT id, priority, created_at FROM runs
            WHERE status = 'queued' AND concurrency_key IS NULL
              AND (start_by IS NULL OR start_by > p_now)
            ORDER BY priority DESC, created_at LIMIT p_limit FOR UPDATE SKIP LOCKED
        ), due AS (
            SELECT id, priority, created_at FROM runs
            WHERE status = 'waiting' AND wake_at <= p_now AND concurrency_key IS NULL
            ORDER BY wake_at LIMIT p_limit FOR UPDATE SKIP LOCKED
        ), expired AS (
            SELECT id, priority, created_at FROM runs
            WHERE status = 'running' AND lease_expires_at < p_now
            ORDER BY lease_expires_at LIMIT p_limit FOR UPDATE SKIP LOCKED
        ), held AS (
            SELECT id, priority, created_at FROM runs
            WHERE cardinality(limited) > 0 AND id = ANY (limited)
        ), candidates AS (
            SELECT id FROM (SELECT * FROM queued UNION ALL SELECT * FROM due
                            UNION ALL SELECT * FROM expired UNION ALL SELECT * FROM held)
                 AS runnable
            ORDER BY priority DESC, created_at LIMIT p_limit
        ), claimed AS (
            UPDATE runs
            SET status = 'running',
                recoveries = recoveries + (status = 'running' AND lease_owner IS DISTINCT FROM p_worker)::int,
                lease_owner = p_worker,
                lease_token = lease_token + 1,
                lease_expires_at = p_lease_until,
                wake_at = NULL,
                wait_reason = NULL,
                signaled = false,
                start_by = NULL,
                first_started_at = coalesce(first_started_at, p_now),
                updated_at = p_now
            FROM candidates
            WHERE runs.id = candidates.id
            RETURNING runs.id, workflow_id, event_id, event_name, event_data, event_ts, created_at,
                      lease_token, recoveries, parent_run_id
        ), slept AS (
            INSERT INTO steps (run_id, step_key, kind, status, output, error, attempts, event_id,
                               started_at, completed_at)
            SELECT w.run_id, w.step_key, w.kind, 'completed', 'null', NULL, 1, NULL, w.created_at,
                   p_now
            FROM waits w JOIN claimed c ON c.id = w.run_id
            WHERE w.kind = 'sleep' AND w.wake_at <= p_now
            ON CONFLICT DO NOTHING
            RETURNING run_id, step_key, kind, status, output, error, attempts, started_at,
                      completed_at, event_id
        ), woke AS (
            DELETE FROM waits USING slept
            WHERE waits.run_id = slept.run_id AND waits.step_key = slept.step_key
        )
        SELECT c.id, c.workflow_id, c.event_id, c.event_name, c.event_data, c.event_ts, c.created_at,
               c.lease_token, c.recoveries, c.parent_run_id,
               h.step_key, h.kind, h.status, h.output, h.error, h.attempts, h.started_at,
               h.completed_at, h.wake_at, h.event_id
        FROM claimed c
        LEFT JOIN LATERAL (
            SELECT step_key, kind, status, output, error, attempts, started_at, completed_at,
                   NULL::double precision AS wake_at, event_id
            FROM steps WHERE c.lease_token > 1 AND run_id = c.id
            UNION ALL
            SELECT step_key, kind, status, output, error, attempts, started_at, completed_at,
                   NULL, event_id
            FROM slept WHERE run_id = c.id
            UNION ALL
            SELECT a.step_key, 'run', 'retrying', NULL, a.error, a.attempt, a.started_at, NULL,
                   a.retry_at, NULL
            FROM step_attempts a
            WHERE c.lease_token > 1 AND a.run_id = c.id
              AND a.attempt = (SELECT max(attempt) FROM step_attempts b
                               WHERE b.run_id = a.run_id AND b.step_key = a.step_key)
              AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.run_id = a.run_id AND s.step_key = a.step_key)
            UNION ALL
            SELECT w.step_key, w.kind, 'waiting', NULL, NULL, 0, w.created_at, NULL, w.wake_at, NULL
            FROM waits w
            WHERE c.lease_token > 1 AND w.run_id = c.id
              AND NOT EXISTS (SELECT 1 FROM slept s WHERE s.run_id = w.run_id AND s.step_key = w.step_key)
        ) AS h ON true
        ORDER BY c.created_at, c.id, h.started_at, h.completed_at, h.step_key;
END
$$;

-- Intake in one round trip: lock_intake, then store_events; if that started, resumed or cancelled
-- some: given p_claim ({worker, limit, lease_until, now}), a claim for that worker as claim_runs
-- makes, returned under "claimed" (claim_runs' rows as objects), and a NOTIFY on p_channel
-- (payload p_sender); else, for an intake of at most 4 events, a claim of at most 8 runs for a
-- worker of another process that offered slots, sent in the NOTIFY's payload ({"s": sender,
-- "w": worker, "runs": rows, "more": bool}; undone if too large for a payload), or a plain NOTIFY.
CREATE FUNCTION intake_events(p_events jsonb, p_channel text, p_sender text, p_claim jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    keys jsonb;
    answer jsonb;
    target record;
    claimed jsonb;
    taken integer;
    payload text;
    v_now double precision;
    v_class integer;
BEGIN
    keys := lock_intake(p_events);
    answer := store_events(p_events, keys);
    IF NOT (answer ->> 'work')::boolean THEN
        RETURN answer;
    END IF;
    IF p_claim IS NOT NULL THEN
        PERFORM pg_notify(p_channel, p_sender);
        RETURN answer || jsonb_build_object('claimed', (
            SELECT coalesce(jsonb_agg(to_jsonb(c)), '[]')
            FROM claim_runs(p_claim ->> 'worker', (p_claim ->> 'limit')::integer,
                            (p_claim ->> 'lease_until')::double precision,
                            (p_claim ->> 'now')::double precision) AS c));
    END IF;
    IF jsonb_array_length(p_events) <= 4 THEN
        -- A worker whose liveness lock this transaction can take has died (its process held it).
        v_class := ('x' || left(encode(sha256(convert_to('dataflows.workers/' || current_schema(),
                                                         'UTF8')), 'hex'), 8))::bit(32)::integer;
        SELECT w.id, least(w.offered, 8) AS slots, w.lease_seconds INTO target
        FROM workers w
        WHERE w.offered > 0 AND w.lock_free_since IS NULL
          AND NOT pg_try_advisory_xact_lock(v_class, w.lock_key)
        ORDER BY random()
        LIMIT 1
        FOR UPDATE SKIP LOCKED;
        IF FOUND THEN
            v_now := (p_events -> -1 ->> 'now')::double precision;
            BEGIN
                SELECT coalesce(jsonb_agg(to_jsonb(c)), '[]') INTO claimed
                FROM claim_runs(target.id, target.slots, v_now + target.lease_seconds, v_now) AS c;
                SELECT count(DISTINCT r ->> 'id') INTO taken FROM jsonb_array_elements(claimed) AS r;
                IF taken > 0 THEN
                    -- "more": the claim used all it could take (others may be runnable still)
                    -- or runs were cancelled (a worker may hold one in a sleep): every listener
                    -- is woken as by a plain notification.
                    payload := jsonb_build_object(
                        's', p_sender, 'w', target.id, 'runs', claimed,
                        'more', taken >= target.slots OR (answer ->> 'cancels')::boolean)::text;
                    IF octet_length(payload) > 7900 THEN
                        RAISE EXCEPTION USING ERRCODE = 'DFTOO';  -- undoes the claim
                    END IF;
                    UPDATE workers SET offered = greatest(offered - taken, 0) WHERE id = target.id;
                    PERFORM pg_notify(p_channel, payload);
                    RETURN answer;
                END IF;
            EXCEPTION WHEN SQLSTATE 'DFTOO' THEN
                NULL;  -- claimed as usual, after the plain notification below
            END;
        END IF;
    END IF;
    PERFORM pg_notify(p_channel, p_sender);
    RETURN answer;
END
$$;

-- Webhook deliveries refused, the newest kept (the dashboard lists them with the reason;
-- a small body is kept, never a secret).
CREATE TABLE webhook_rejections (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source      text NOT NULL,
    status      integer NOT NULL,
    reason      text NOT NULL,
    body        text,
    body_bytes  bigint,
    received_at double precision NOT NULL
);

-- Starts the runs of one batch of app.start (group commit), called in autocommit: the call is
-- the transaction, one round trip where BEGIN, the insert and COMMIT took three. p_runs: one
-- JSON array per run of the columns it is created with, by position (runs._run_rows), in the
-- order they are written: (workflow, idempotency key), callers' order within a key, so a key
-- repeated in the batch goes to its first caller and two batches cannot deadlock on keys.
-- p_expire: the keys past their idempotency window to give up first, in that order, as
-- [workflow, key, created at or before], or NULL. Answers the runs it did not create, by their
-- position in p_runs (1-based): the run holding the key, else the run of that id (a retry whose
-- first answer was lost), else NULL. Wakes the workers (p_channel) when it created any.
CREATE FUNCTION start_runs(p_runs jsonb, p_expire jsonb, p_channel text, p_sender text)
RETURNS TABLE (n bigint, id text)
LANGUAGE plpgsql VOLATILE SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    created text[];
    expiring jsonb;
BEGIN
    IF p_expire IS NOT NULL THEN
        FOR expiring IN SELECT e FROM jsonb_array_elements(p_expire) AS e LOOP
            UPDATE runs SET idempotency_key = NULL
            WHERE runs.workflow_id = expiring ->> 0 AND runs.idempotency_key = expiring ->> 1
              AND runs.created_at <= (expiring ->> 2)::double precision;
        END LOOP;
    END IF;
    WITH inserted AS (
        INSERT INTO runs (id, workflow_id, status, event_id, event_name, event_data, event_ts,
                          idempotency_key, parent_run_id, parent_step_key, created_at,
                          updated_at, concurrency_key, priority, start_by, rate_key)
        SELECT v.r ->> 0, v.r ->> 1, 'queued', v.r ->> 2, v.r ->> 3, v.r ->> 4,
               (v.r ->> 5)::double precision, v.r ->> 6, v.r ->> 7, v.r ->> 8,
               (v.r ->> 13)::double precision, (v.r ->> 13)::double precision, v.r ->> 9,
               (v.r ->> 10)::int,
               (v.r ->> 13)::double precision + (v.r ->> 11)::double precision, v.r ->> 12
        FROM jsonb_array_elements(p_runs) WITH ORDINALITY AS v(r, o)
        ORDER BY v.o
        ON CONFLICT DO NOTHING
        RETURNING runs.id
    )
    SELECT coalesce(array_agg(inserted.id), '{}') INTO created FROM inserted;
    IF cardinality(created) > 0 THEN
        PERFORM pg_notify(p_channel, p_sender);
    END IF;
    IF cardinality(created) < jsonb_array_length(p_runs) THEN
        RETURN QUERY
        SELECT v.o, coalesce(
            (SELECT x.id FROM runs x
             WHERE x.workflow_id = v.r ->> 1 AND x.idempotency_key = v.r ->> 6),
            (SELECT x.id FROM runs x WHERE x.id = v.r ->> 0))
        FROM jsonb_array_elements(p_runs) WITH ORDINALITY AS v(r, o)
        WHERE v.r ->> 0 <> ALL (created);
    END IF;
END
$$;
