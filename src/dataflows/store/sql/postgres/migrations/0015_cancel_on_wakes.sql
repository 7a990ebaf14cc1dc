-- dataflows schema, version 15 (PostgreSQL): cancel_on cancels wake workers and tell parents.
-- Runs with search_path set to the store's schema.

-- As in version 10, and: resolve_waits answers the runs its cancel waits cancelled as well
-- (children included), so that store_events counts them as work and the caller wakes the
-- workers (one holding such a run in a sleep drops it at once, as after a cancel by a call);
-- and every run cancelled so that a parent invoked sends it run.finished, the children
-- cancelled with a run too (they did not), as when a run is cancelled by a call. Its result
-- changes: dropped and created again.
DROP FUNCTION resolve_waits(text, jsonb, text, text, double precision);

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

-- Event intake, as in version 13, and: runs cancelled by cancel_on count as work (a NOTIFY),
-- and the answer says whether there were any ("cancels").
CREATE OR REPLACE FUNCTION store_events(p_events jsonb, p_keys jsonb) RETURNS jsonb
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
    results jsonb := '[]';
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
    IF jsonb_path_exists(p_events, '$[*].runs[*].rate_limit ? (@ != null)') THEN
        PERFORM pg_advisory_xact_lock(l.id)
        FROM (SELECT DISTINCT rate_lock(r ->> 'workflow_id', r ->> 'rate_key') AS id
              FROM jsonb_array_elements(p_events) AS x
              CROSS JOIN LATERAL jsonb_array_elements(x -> 'runs') AS r
              WHERE r ->> 'rate_limit' IS NOT NULL ORDER BY 1) AS l;
    END IF;
    -- Debounced runs: their keys' locks, likewise, so that two intakes never both create a
    -- key's pending run.
    IF jsonb_path_exists(p_events, '$[*].runs[*].debounce_period ? (@ != null)') THEN
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
            results := results || jsonb_build_array(jsonb_build_object(
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
            SELECT coalesce(jsonb_agg(r.id), '[]') INTO dropped
            FROM jsonb_to_recordset(e -> 'runs') AS r(
                     id text, workflow_id text, rate_key text, rate_limit integer,
                     rate_period double precision, now double precision)
            WHERE r.rate_limit IS NOT NULL
              AND (SELECT count(*) FROM runs o
                   WHERE o.workflow_id = r.workflow_id AND o.rate_key = r.rate_key
                     AND o.created_at > r.now - r.rate_period) >= r.rate_limit;
            IF jsonb_path_exists(e, '$.runs[*].debounce_period ? (@ != null)') THEN
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
        results := results || jsonb_build_array(jsonb_build_object(
            'duplicate', false, 'resumed', to_jsonb(resumed), 'runs', created,
            'rate_limited', dropped, 'debounced', debounced));
    END LOOP;
    RETURN jsonb_build_object('results', results, 'work', work, 'cancels', cancels);
END
$$;
