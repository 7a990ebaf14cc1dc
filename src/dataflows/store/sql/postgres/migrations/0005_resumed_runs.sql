-- dataflows schema, version 5 (PostgreSQL): event intake says which runs each event resumed.
-- Runs with search_path set to the store's schema; the functions resolve tables through it.

-- resolve_waits as in version 3, returning the ids of the runs whose waits it resolved (sorted)
-- instead of how many runs it woke or signalled.
DROP FUNCTION resolve_waits(text, jsonb, text, text, double precision);

CREATE FUNCTION resolve_waits(
    p_event_name text, p_keys jsonb, p_event_id text, p_output text, p_now double precision
) RETURNS text[]
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    resumed text[];
BEGIN
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
        RETURNING run_id, step_key
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
          AND r.status IN ('waiting', 'running')
    )
    SELECT coalesce(array_agg(DISTINCT run_id ORDER BY run_id), '{}') INTO resumed FROM recorded;
    RETURN resumed;
END
$$;

-- store_events as in version 3, with each new event's result naming the runs it resumed:
-- {"duplicate": false, "resumed": [run ids]}. A resumed run is notified for like a started one.
CREATE OR REPLACE FUNCTION store_events(
    p_events jsonb, p_shapes jsonb, p_name_locks jsonb, p_key_locks jsonb, p_channel text,
    p_sender text
) RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    e jsonb;
    found jsonb;
    inserted integer;
    resumed text[];
    work boolean := false;
    results jsonb := '[]';
BEGIN
    PERFORM count(pg_advisory_xact_lock_shared(hashtextextended(current_schema() || l.key, 0)))
    FROM jsonb_array_elements_text(p_name_locks) WITH ORDINALITY AS l(key, n);
    -- A fresh snapshot (this is a new statement of a VOLATILE function): taken after the locks.
    SELECT coalesce(jsonb_object_agg(s.event_name, s.paths), '{}') INTO found
    FROM (SELECT w.event_name, jsonb_agg(w.filter_paths ORDER BY w.filter_paths COLLATE "C")
                 AS paths
          FROM wait_shapes w
          WHERE w.event_name IN (SELECT x ->> 'name' FROM jsonb_array_elements(p_events) AS x)
          GROUP BY w.event_name) AS s;
    IF found <> p_shapes THEN
        RETURN jsonb_build_object('shapes', found);
    END IF;
    PERFORM count(pg_advisory_xact_lock(hashtextextended(current_schema() || l.key, 0)))
    FROM jsonb_array_elements_text(p_key_locks) WITH ORDINALITY AS l(key, n);
    IF jsonb_array_length(p_events) > 1 AND jsonb_array_length(p_key_locks) > 0 THEN
        PERFORM lock_waiting_runs(
            (SELECT coalesce(jsonb_agg(jsonb_build_array(x ->> 'name', k ->> 0, k ->> 1)), '[]')
             FROM jsonb_array_elements(p_events) AS x
             CROSS JOIN jsonb_array_elements(x -> 'keys') AS k));
    END IF;
    FOR e IN SELECT x FROM jsonb_array_elements(p_events) AS x LOOP
        INSERT INTO events (id, name, data, ts, received_at)
        VALUES (e ->> 'id', e ->> 'name', (e ->> 'data')::jsonb, (e ->> 'ts')::double precision,
                (e ->> 'now')::double precision)
        ON CONFLICT (id) DO NOTHING;
        GET DIAGNOSTICS inserted = ROW_COUNT;
        IF inserted = 0 THEN
            results := results || jsonb_build_array(jsonb_build_object(
                'duplicate', true,
                'runs', (SELECT coalesce(jsonb_agg(r.id ORDER BY r.created_at, r.id), '[]')
                         FROM runs r
                         WHERE r.event_id = e ->> 'id' AND r.parent_run_id IS NULL)));
            CONTINUE;
        END IF;
        IF jsonb_array_length(e -> 'runs') > 0 THEN
            INSERT INTO runs (id, workflow_id, status, event_id, event_name, event_data, event_ts,
                              idempotency_key, parent_run_id, parent_step_key, created_at,
                              updated_at)
            SELECT r.id, r.workflow_id, 'queued', r.event_id, r.event_name, r.event_data,
                   r.event_ts, r.idempotency_key, r.parent_run_id, r.parent_step_key, r.now, r.now
            FROM jsonb_to_recordset(e -> 'runs') AS r(
                     id text, workflow_id text, event_id text, event_name text, event_data text,
                     event_ts double precision, idempotency_key text, parent_run_id text,
                     parent_step_key text, now double precision)
            ON CONFLICT DO NOTHING;
            work := true;
        END IF;
        resumed := '{}';
        IF jsonb_array_length(e -> 'keys') > 0 THEN
            resumed := resolve_waits(e ->> 'name', e -> 'keys', e ->> 'id', e ->> 'output',
                                     (e ->> 'now')::double precision);
            work := work OR cardinality(resumed) > 0;
        END IF;
        results := results || jsonb_build_array(
            jsonb_build_object('duplicate', false, 'resumed', to_jsonb(resumed)));
    END LOOP;
    IF work THEN
        PERFORM pg_notify(p_channel, p_sender);
    END IF;
    RETURN jsonb_build_object('results', results, 'notified', work);
END
$$;
