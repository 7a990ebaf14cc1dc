-- dataflows schema, version 17 (PostgreSQL): the claim and event intake cost workflows without
-- limits what they did before flow control.
-- Runs with search_path set to the store's schema.

-- The claim, as in version 13, and: its statements are planned once per session, for any
-- arguments (plan_cache_mode = force_generic_plan). PL/pgSQL plans each statement afresh for a
-- session's first five calls; with the statements of version 13 and the indexes of flow control
-- such a plan took 0.7-1.4 ms per call (a call on a ready plan with nothing to claim: 0.1 ms),
-- and a worker's pooled sessions make few claims each, so nearly every claim paid it. And the runs of limited workflows the loop took are read only
-- when it took some (the generic plan of `id = ANY (limited)` may scan the table).
CREATE OR REPLACE FUNCTION claim_runs(
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


-- Event intake, as in version 15, and: whether a batch has rate-limited or debounced runs is
-- asked once, and an event's rate limit and debounce checks run only when it has; the answers
-- are gathered in an array (appending to a jsonb array copied it whole for every event, and an
-- answer grew by two members in version 13: a batch of 500 events took twice as long).
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
