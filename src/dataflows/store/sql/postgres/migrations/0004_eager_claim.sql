-- dataflows schema, version 4 (PostgreSQL): claims as a function, and intake that can claim.
-- Runs with search_path set to the store's schema; the functions resolve tables through it.

-- claim_runs: the statement the store sent before, unchanged, as a function, so that event intake
-- can claim in its own transaction too (eager dispatch: the run an event wakes goes to a worker
-- of the sending process without a further round trip).
-- One locking scan per partial index, in that index's order so that a backlog of due timers
-- or expired leases is never sorted whole (FOR UPDATE is not allowed in a UNION). Rows other
-- workers hold, or that a fenced write holds FOR SHARE, are skipped, never waited for. Of the
-- candidates the oldest runs win; the others are unlocked at commit, a moment later.
-- The claimed runs' sleeps that are due are recorded as elapsed in the same statement, and each
-- claimed run comes back with its history (one row per recorded step, retried step or pending
-- wait; one row of NULLs if it has none), so a run resumes after one round trip. The history
-- reads the statement's snapshot, which the sleeps recorded here are not part of: they are
-- added from the INSERT's RETURNING, and their waits left out.
CREATE FUNCTION claim_runs(
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
BEGIN
    RETURN QUERY
        WITH queued AS (
            SELECT id, created_at FROM runs WHERE status = 'queued'
            ORDER BY created_at LIMIT p_limit FOR UPDATE SKIP LOCKED
        ), due AS (
            SELECT id, created_at FROM runs WHERE status = 'waiting' AND wake_at <= p_now
            ORDER BY wake_at LIMIT p_limit FOR UPDATE SKIP LOCKED
        ), expired AS (
            SELECT id, created_at FROM runs WHERE status = 'running' AND lease_expires_at < p_now
            ORDER BY lease_expires_at LIMIT p_limit FOR UPDATE SKIP LOCKED
        ), candidates AS (
            SELECT id FROM (SELECT * FROM queued UNION ALL SELECT * FROM due
                            UNION ALL SELECT * FROM expired) AS runnable
            ORDER BY created_at LIMIT p_limit
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

-- Intake as version 3 stores events (that function, renamed), then, given p_claim ({worker,
-- limit, lease_until, now}) and work to do, claims runs for that worker as claim_runs does, in
-- the same transaction, returning them under "claimed" (claim_runs' rows as objects).
ALTER FUNCTION intake_events(jsonb, jsonb, jsonb, jsonb, text, text) RENAME TO store_events;

CREATE FUNCTION intake_events(
    p_events jsonb, p_shapes jsonb, p_name_locks jsonb, p_key_locks jsonb, p_channel text,
    p_sender text, p_claim jsonb
) RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    answer jsonb;
BEGIN
    answer := store_events(p_events, p_shapes, p_name_locks, p_key_locks, p_channel, p_sender);
    -- "notified": it started runs or woke some (absent when the shapes were out of date).
    IF p_claim IS NOT NULL AND coalesce((answer ->> 'notified')::boolean, false) THEN
        answer := answer || jsonb_build_object('claimed', (
            SELECT coalesce(jsonb_agg(to_jsonb(c)), '[]')
            FROM claim_runs(p_claim ->> 'worker', (p_claim ->> 'limit')::integer,
                            (p_claim ->> 'lease_until')::double precision,
                            (p_claim ->> 'now')::double precision) AS c));
    END IF;
    RETURN answer;
END
$$;
