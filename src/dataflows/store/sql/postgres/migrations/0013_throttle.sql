-- dataflows schema, version 13 (PostgreSQL): throttles.
-- Runs with search_path set to the store's schema.

-- A run records when it was first claimed (first_started_at, kept through suspensions and
-- recoveries). A throttled workflow's runs carry its throttle key as their concurrency key
-- (the two limits share the key), and flow_limits its throttle: at most `throttle` runs of a
-- key first claimed within `throttle_period` seconds. A throttle alone is stored with the
-- concurrency 2147483647 (no limit).
ALTER TABLE runs ADD COLUMN first_started_at double precision;
ALTER TABLE flow_limits ADD COLUMN throttle integer;
ALTER TABLE flow_limits ADD COLUMN throttle_period double precision;
CREATE INDEX runs_started ON runs (workflow_id, concurrency_key, first_started_at)
    WHERE concurrency_key IS NOT NULL AND first_started_at IS NOT NULL;

-- The claim, as in version 12, and: every claimed run's first claim is recorded; a key whose
-- workflow has a throttle lends its runs that never started only the starts its window has
-- left (see the loop), counted under the key's slot lock like its running runs.
CREATE OR REPLACE FUNCTION claim_runs(
    p_worker text, p_limit integer, p_lease_until double precision, p_now double precision
) RETURNS TABLE (
    id text, workflow_id text, event_id text, event_name text, event_data text,
    event_ts double precision, created_at double precision, lease_token bigint,
    recoveries integer, parent_run_id text, step_key text, kind text, status text,
    output text, error text, attempts integer, started_at double precision,
    completed_at double precision, wake_at double precision, step_event_id text
)
LANGUAGE plpgsql VOLATILE AS $$
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
            SELECT id, priority, created_at FROM runs WHERE id = ANY (limited)
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
