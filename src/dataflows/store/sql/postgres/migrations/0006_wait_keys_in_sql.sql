-- dataflows schema, version 6 (PostgreSQL): event intake reads the filter shapes and computes
-- the wait keys itself, in SQL, under its locks; a wait computes its key with the same SQL.
-- Runs with search_path set to the store's schema; the functions resolve tables through it.

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

-- Waits pending at the upgrade: their keys in this form (the engine made them before, as
-- canonical JSON text of its own, which differs in spacing, escapes and member order).
UPDATE waits SET filter_key = canonical_jsonb(filter_key::jsonb)::text
WHERE filter_key IS NOT NULL;

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

-- Store events, start their runs and resolve the waits they match, under lock_intake's locks
-- (p_keys: what it answered for p_events). p_events: [{id, name, data, ts, now, output (a wait
-- step's output), runs: [insert_run parameters]}]. Returns {"results": [{"duplicate": true,
-- "runs": [a duplicate's runs]} or {"duplicate": false, "resumed": [run ids]}], "work": bool},
-- "work" meaning it started runs or resumed some (the caller wakes workers).
CREATE FUNCTION store_events(p_events jsonb, p_keys jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    e jsonb;
    n bigint;
    keys jsonb;
    inserted integer;
    resumed text[];
    work boolean := false;
    results jsonb := '[]';
BEGIN
    FOR e, n IN SELECT x.value, x.n FROM jsonb_array_elements(p_events) WITH ORDINALITY AS x(value, n)
    LOOP
        INSERT INTO events (id, name, data, ts, received_at)
        VALUES (e ->> 'id', e ->> 'name', e -> 'data', (e ->> 'ts')::double precision,
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

-- Intake in one round trip: lock_intake, then store_events; if that started runs or resumed
-- some, a NOTIFY on p_channel (payload p_sender) and, given p_claim ({worker, limit,
-- lease_until, now}), a claim for that worker as claim_runs makes, in the same transaction,
-- returned under "claimed" (claim_runs' rows as objects).
CREATE FUNCTION intake_events(p_events jsonb, p_channel text, p_sender text, p_claim jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    keys jsonb;
    answer jsonb;
BEGIN
    keys := lock_intake(p_events);
    answer := store_events(p_events, keys);
    IF (answer ->> 'work')::boolean THEN
        PERFORM pg_notify(p_channel, p_sender);
        IF p_claim IS NOT NULL THEN
            answer := answer || jsonb_build_object('claimed', (
                SELECT coalesce(jsonb_agg(to_jsonb(c)), '[]')
                FROM claim_runs(p_claim ->> 'worker', (p_claim ->> 'limit')::integer,
                                (p_claim ->> 'lease_until')::double precision,
                                (p_claim ->> 'now')::double precision) AS c));
        END IF;
    END IF;
    RETURN answer;
END
$$;

-- Replaced by the functions above: intake no longer takes keys, locks or shapes from its caller.
DROP FUNCTION intake_events(jsonb, jsonb, jsonb, jsonb, text, text, jsonb);
DROP FUNCTION store_events(jsonb, jsonb, jsonb, jsonb, text, text);
DROP FUNCTION lock_wait_shapes(jsonb, jsonb);
