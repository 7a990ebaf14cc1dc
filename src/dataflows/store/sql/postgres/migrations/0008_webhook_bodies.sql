-- dataflows schema, version 8 (PostgreSQL): the webhook bodies seen, for sources whose
-- signature covers the body but not the delivery id (digest: SHA-256 of the raw body, hex).
-- Intake remembers a body with the event it became, in the same transaction; the same body again
-- before expires_at is a duplicate of that event, whatever delivery id it came with.
-- Runs with search_path set to the store's schema; the functions resolve tables through it.

CREATE TABLE webhook_bodies (
    source     text NOT NULL,
    digest     text NOT NULL,
    event_id   text NOT NULL,
    seen_at    double precision NOT NULL,
    expires_at double precision NOT NULL,
    PRIMARY KEY (source, digest)
);
CREATE INDEX webhook_bodies_expiry ON webhook_bodies (expires_at);

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
-- runs]} or {"duplicate": false, "resumed": [run ids]}], "work": bool}, "work" meaning it
-- started runs or resumed some (the caller wakes workers).
CREATE OR REPLACE FUNCTION store_events(p_events jsonb, p_keys jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    e jsonb;
    n bigint;
    keys jsonb;
    inserted integer;
    resumed text[];
    work boolean := false;
    results jsonb := '[]';
    firsts jsonb := '{}';
    v_id text;
BEGIN
    IF jsonb_path_exists(p_events, '$[*].body') THEN
        firsts := remember_bodies(p_events);
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
        keys := p_keys -> (n::integer - 1);
        resumed := '{}';
        IF jsonb_array_length(keys) > 0 THEN
            resumed := resolve_waits(e ->> 'name', keys, e ->> 'id', e ->> 'output',
                                     (e ->> 'now')::double precision);
            work := work OR cardinality(resumed) > 0;
        END IF;
        results := results || jsonb_build_array(
            jsonb_build_object('duplicate', false, 'resumed', to_jsonb(resumed)));
    END LOOP;
    RETURN jsonb_build_object('results', results, 'work', work);
END
$$;
