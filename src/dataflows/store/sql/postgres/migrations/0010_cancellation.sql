-- dataflows schema, version 10 (PostgreSQL): cancellation.
-- Runs with search_path set to the store's schema.

-- A cancelled run's unfinished children (the runs it invoked) are cancelled with it: found by
-- their parent.
CREATE INDEX runs_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;

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

-- As before, and a wait of kind 'cancel' (a workflow's cancel_on, registered when its run is
-- first claimed) cancels its run instead of resuming it: the run and its unfinished children
-- are cancelled in the same transaction, and the run is not among those returned. A cancelled
-- run that a parent invoked sends it run.finished (store_events, under lock_intake's locks).
CREATE OR REPLACE FUNCTION resolve_waits(
    p_event_name text, p_keys jsonb, p_event_id text, p_output text, p_now double precision
) RETURNS text[]
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    resumed text[];
    cancelling text[];
    v_error text;
    finished jsonb;
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
        PERFORM cancel_run_trees(cancelling, v_error, p_now);
        -- A cancelled run that a parent invoked tells it, as a finished child does: the
        -- run.finished event, taken in by the same functions as any event.
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
                                                    'error', v_error::jsonb),
                         'ts', p_now) AS ev
              FROM runs r
              WHERE r.id = ANY (cancelling) AND r.parent_run_id IS NOT NULL) AS x;
        IF finished IS NOT NULL THEN
            PERFORM store_events(finished, lock_intake(finished));
        END IF;
    END IF;
    RETURN resumed;
END
$$;
