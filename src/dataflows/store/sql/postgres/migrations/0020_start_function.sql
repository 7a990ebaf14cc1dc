-- dataflows schema, version 20 (PostgreSQL): app.start's batches in one round trip.
-- Runs with search_path set to the store's schema.

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
