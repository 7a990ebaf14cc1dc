-- Runtime queries for the SQLite store, one named block each ("-- name: x"),
-- and the fragments they share ("-- fragment: x", used as {x}).
-- The PostgreSQL file defines the same names for the operations both dialects run the same way; a
-- test keeps them in step. Event intake differs: SQLite runs it statement by statement
-- (wait_shapes, body_event, remember_body, forget_expired_bodies, insert_event, runs_of_event,
-- resolve_waits), PostgreSQL in its functions.

-- fragment: fence
-- The fence of every write a worker makes for a run: the run is still running under the lease
-- token the worker got when it claimed it. A worker that lost its lease (paused, partitioned,
-- slow) writes nothing. Queries say {fence}, or {fence r} for runs named r.
runs.lease_token = :lease_token AND runs.status = 'running'

-- fragment: shown_reason
-- Why a run is where it is, as shown: a queued run held back by its concurrency limit or its
-- throttle says so (worked out now, from the runs of its key: the claim decides the same way);
-- any other run shows its stored wait_reason. Queries say {shown_reason}, or
-- {shown_reason r} for runs named r.
CASE WHEN runs.status = 'queued' AND runs.concurrency_key IS NOT NULL
      AND (SELECT count(*) FROM runs s
           WHERE s.status = 'running' AND s.workflow_id = runs.workflow_id
             AND s.concurrency_key = runs.concurrency_key)
          >= (SELECT l.concurrency FROM flow_limits l WHERE l.workflow_id = runs.workflow_id)
     THEN 'concurrency ' || runs.workflow_id
          || CASE WHEN runs.concurrency_key = '' THEN '' ELSE '/' || runs.concurrency_key END
     WHEN runs.status = 'queued' AND runs.concurrency_key IS NOT NULL
      AND runs.first_started_at IS NULL
      AND (SELECT count(*) FROM runs s JOIN flow_limits l ON l.workflow_id = s.workflow_id
           WHERE s.workflow_id = runs.workflow_id AND s.concurrency_key = runs.concurrency_key
             AND s.first_started_at > (
                 SELECT max(m.first_started_at) FROM runs m
                 WHERE m.workflow_id = runs.workflow_id
                   AND m.concurrency_key = runs.concurrency_key) - l.throttle_period)
          >= (SELECT l.throttle FROM flow_limits l WHERE l.workflow_id = runs.workflow_id)
     THEN 'throttle ' || runs.workflow_id
          || CASE WHEN runs.concurrency_key = '' THEN '' ELSE '/' || runs.concurrency_key END
     ELSE runs.wait_reason END

-- name: body_event
-- A webhook body signed without its delivery id, seen within its window: the event it became
-- (a row whose event was purged meanwhile counts as unseen).
SELECT b.event_id FROM webhook_bodies b
WHERE b.source = :source AND b.digest = :digest AND b.expires_at > :now
  AND EXISTS (SELECT 1 FROM events e WHERE e.id = b.event_id)

-- name: remember_body
-- The body is this event's until expires_at (an expired row, or one whose event was purged, is
-- taken over). BEGIN IMMEDIATE serialises intakes, so body_event and this cannot interleave.
INSERT INTO webhook_bodies (source, digest, event_id, seen_at, expires_at)
VALUES (:source, :digest, :event_id, :now, :expires_at)
ON CONFLICT (source, digest) DO UPDATE
SET event_id = excluded.event_id, seen_at = excluded.seen_at, expires_at = excluded.expires_at

-- name: forget_expired_bodies
-- Bounded cleanup: each body remembered deletes up to :limit expired rows, oldest first.
DELETE FROM webhook_bodies WHERE (source, digest) IN (
    SELECT source, digest FROM webhook_bodies WHERE expires_at <= :now
    ORDER BY expires_at LIMIT :limit)

-- name: insert_event
INSERT INTO events (id, name, data, ts, received_at)
VALUES (:id, :name, :data, :ts, :now)
ON CONFLICT (id) DO NOTHING

-- name: runs_of_event
SELECT id FROM runs WHERE event_id = :event_id AND parent_run_id IS NULL ORDER BY created_at, id

-- name: insert_run
INSERT INTO runs (id, workflow_id, status, event_id, event_name, event_data, event_ts,
                  idempotency_key, parent_run_id, parent_step_key, created_at, updated_at,
                  concurrency_key, priority, start_by, rate_key)
VALUES (:id, :workflow_id, 'queued', :event_id, :event_name, :event_data, :event_ts,
        :idempotency_key, :parent_run_id, :parent_step_key, :now, :now, :concurrency_key,
        :priority, :now + :start_timeout, :rate_key)
ON CONFLICT DO NOTHING

-- name: insert_runs
-- Group commit of app.start: the insert_run rows of many calls at once, in the callers' order (a
-- key or id repeated in the batch goes to its first caller); answers the ids created. Each run is
-- a JSON array of its columns, by position (runs._run_rows).
INSERT INTO runs (id, workflow_id, status, event_id, event_name, event_data, event_ts,
                  idempotency_key, parent_run_id, parent_step_key, created_at, updated_at,
                  concurrency_key, priority, start_by, rate_key)
SELECT value ->> '$[0]', value ->> '$[1]', 'queued', value ->> '$[2]', value ->> '$[3]',
       value ->> '$[4]', value ->> '$[5]', value ->> '$[6]', value ->> '$[7]',
       value ->> '$[8]', value ->> '$[13]', value ->> '$[13]', value ->> '$[9]',
       value ->> '$[10]', (value ->> '$[13]') + (value ->> '$[11]'), value ->> '$[12]'
FROM json_each(:runs)
WHERE true
ORDER BY key
ON CONFLICT DO NOTHING
RETURNING id

-- name: insert_debounced_run
-- A debounced run: waiting for its period before it starts (intake found no pending run).
INSERT INTO runs (id, workflow_id, status, event_id, event_name, event_data, event_ts,
                  idempotency_key, parent_run_id, parent_step_key, created_at, updated_at,
                  concurrency_key, priority, start_by, rate_key, wake_at, wait_reason,
                  debounce_key, debounce_until)
VALUES (:id, :workflow_id, 'waiting', :event_id, :event_name, :event_data, :event_ts,
        :idempotency_key, :parent_run_id, :parent_step_key, :now, :now, :concurrency_key,
        :priority, :now + :start_timeout, :rate_key, :now + :debounce_period,
        'debounce ' || :workflow_id
        || CASE WHEN :debounce_key = '' THEN '' ELSE '/' || :debounce_key END,
        :debounce_key, :now + :debounce_max_wait)
ON CONFLICT DO NOTHING

-- name: debounce_run
-- The pending run of a debounced workflow's key (waiting for its period, never started) takes
-- the new event and is pushed back to a period from now, at most to its debounce_until.
UPDATE runs
SET event_id = :event_id, event_name = :event_name, event_data = :event_data,
    event_ts = :event_ts,
    wake_at = min(:now + :debounce_period, coalesce(debounce_until, :now + :debounce_period)),
    updated_at = :now
WHERE workflow_id = :workflow_id AND debounce_key = :debounce_key AND status = 'waiting'
  AND first_started_at IS NULL
RETURNING id

-- name: run_by_idempotency_key
SELECT id FROM runs WHERE workflow_id = :workflow_id AND idempotency_key = :idempotency_key

-- name: resolve_waits
-- As PostgreSQL's resolve_waits function, in three statements (SQLite has no data-modifying WITH; writers are
-- serialised, so nothing to lock); the store runs them in order and answers with the last one's
-- rows: the run of each wait resolved.
INSERT INTO steps (run_id, step_key, kind, status, output, error, attempts, event_id,
                   started_at, completed_at)
SELECT w.run_id, w.step_key, w.kind, 'completed', :output, NULL, 1, :event_id, w.created_at,
       :now
FROM json_each(:keys) AS k
CROSS JOIN waits w  -- CROSS JOIN keeps this order: one index lookup per key
  ON w.event_name = :event_name AND w.filter_paths = json_extract(k.value, '$[0]')
 AND w.filter_key = json_extract(k.value, '$[1]')
JOIN runs r ON r.id = w.run_id AND r.status IN ('waiting', 'running', 'queued')
WHERE true
ORDER BY w.run_id, w.created_at, w.step_key
ON CONFLICT DO NOTHING;

UPDATE runs
SET status = CASE WHEN status = 'waiting' THEN 'queued' ELSE status END,
    wake_at = CASE WHEN status = 'waiting' THEN NULL ELSE wake_at END,
    signaled = CASE WHEN status = 'running' THEN 1 ELSE signaled END,
    updated_at = :now
WHERE id IN (SELECT w.run_id
             FROM json_each(:keys) AS k
             CROSS JOIN waits w
               ON w.event_name = :event_name AND w.filter_paths = json_extract(k.value, '$[0]')
              AND w.filter_key = json_extract(k.value, '$[1]')
             JOIN steps s
               ON s.run_id = w.run_id AND s.step_key = w.step_key AND s.event_id = :event_id
             WHERE w.kind <> 'cancel')
  AND id NOT IN (SELECT w.run_id
                 FROM json_each(:keys) AS k
                 CROSS JOIN waits w
                   ON w.event_name = :event_name
                  AND w.filter_paths = json_extract(k.value, '$[0]')
                  AND w.filter_key = json_extract(k.value, '$[1]')
                 WHERE w.kind = 'cancel')
  AND status IN ('waiting', 'running');

-- A wait of kind 'cancel' (a workflow's cancel_on) cancels its run instead, and its unfinished
-- children with it (recursively, as PostgreSQL's cancel_run_trees); their waits go. The runs
-- are gathered in a temporary table of this connection first.
CREATE TEMP TABLE IF NOT EXISTS cancelling (id TEXT PRIMARY KEY, root INTEGER NOT NULL);

DELETE FROM temp.cancelling;

INSERT INTO temp.cancelling (id, root)
SELECT DISTINCT w.run_id, 1
FROM json_each(:keys) AS k
CROSS JOIN waits w
  ON w.event_name = :event_name AND w.filter_paths = json_extract(k.value, '$[0]')
 AND w.filter_key = json_extract(k.value, '$[1]')
JOIN steps s ON s.run_id = w.run_id AND s.step_key = w.step_key AND s.event_id = :event_id
WHERE w.kind = 'cancel';

INSERT OR IGNORE INTO temp.cancelling (id, root)
WITH RECURSIVE tree (id) AS (
    SELECT id FROM temp.cancelling
    UNION
    SELECT r.id FROM runs r JOIN tree t ON r.parent_run_id = t.id
    WHERE r.status IN ('queued', 'running', 'waiting')
)
SELECT id, 0 FROM tree;

UPDATE runs
SET status = 'cancelled', completed_at = :now, updated_at = :now, wake_at = NULL,
    wait_reason = NULL, signaled = 0, lease_owner = NULL, lease_expires_at = NULL,
    error = CASE WHEN (SELECT root FROM temp.cancelling c WHERE c.id = runs.id) = 1
                 THEN json_object('type', 'Cancelled',
                                  'message', 'cancelled by event ' || :event_id
                                             || ' (' || :event_name || ')')
                 ELSE '{"type": "Cancelled", "message": "the parent run was cancelled"}' END
WHERE id IN (SELECT id FROM temp.cancelling) AND status IN ('queued', 'running', 'waiting');

DELETE FROM waits WHERE run_id IN (SELECT id FROM temp.cancelling);

DELETE FROM waits
WHERE (run_id, step_key) IN (
    SELECT w.run_id, w.step_key
    FROM json_each(:keys) AS k
    CROSS JOIN waits w
      ON w.event_name = :event_name AND w.filter_paths = json_extract(k.value, '$[0]')
     AND w.filter_key = json_extract(k.value, '$[1]')
    JOIN steps s
      ON s.run_id = w.run_id AND s.step_key = w.step_key AND s.event_id = :event_id)
RETURNING run_id

-- name: cancelled_by_intake
-- Right after resolve_waits: the runs its cancel_on waits cancelled, their children included
-- (intake wakes the workers, and each run that a parent invoked sends it run.finished, as a
-- finished child does).
SELECT r.id, r.workflow_id, r.error, r.parent_run_id
FROM temp.cancelling c JOIN runs r ON r.id = c.id
WHERE r.status = 'cancelled'
ORDER BY r.id

-- name: claim_runs
-- As on PostgreSQL: claim, record the claimed runs' due sleeps, answer with runs and history.
-- In several statements (the store runs them in order in one transaction and answers with the
-- last one's rows), the claimed ids kept in a temporary table of this connection.
CREATE TEMP TABLE IF NOT EXISTS claimed (id TEXT PRIMARY KEY, created_at REAL NOT NULL);

DELETE FROM temp.claimed;

-- Runs of workflows with a concurrency limit: a due timer turns them back to queued (a
-- suspended run holds no slot), and of a key's queued runs, by priority then age, only as many
-- as it has free slots are candidates (writers are serialised: nothing to lock).
-- A throttled key's runs that never started are candidates only while its window has starts
-- left (first claims within the last throttle_period), oldest first.
UPDATE runs SET status = 'queued', wake_at = NULL, updated_at = :now
WHERE status = 'waiting' AND concurrency_key IS NOT NULL AND wake_at <= :now;

INSERT INTO temp.claimed (id, created_at)
SELECT id, created_at FROM (
    SELECT id, priority, created_at FROM runs
    WHERE status = 'queued' AND concurrency_key IS NULL
      AND (start_by IS NULL OR start_by > :now)
    UNION ALL
    SELECT id, priority, created_at FROM runs
    WHERE status = 'waiting' AND wake_at <= :now AND concurrency_key IS NULL
    UNION ALL
    SELECT id, priority, created_at FROM runs WHERE status = 'running' AND lease_expires_at < :now
    UNION ALL
    SELECT id, priority, created_at FROM (
        SELECT e.id, e.priority, e.created_at, e.free,
               row_number() OVER (PARTITION BY e.workflow_id, e.concurrency_key
                                  ORDER BY e.priority DESC, e.created_at, e.id) AS n
        FROM (
            SELECT q.id, q.workflow_id, q.concurrency_key, q.priority, q.created_at,
                   q.first_started_at,
                   row_number() OVER (PARTITION BY q.workflow_id, q.concurrency_key,
                                                   q.first_started_at IS NULL
                                      ORDER BY q.priority DESC, q.created_at, q.id) AS u,
                   coalesce((SELECT l.concurrency FROM flow_limits l
                             WHERE l.workflow_id = q.workflow_id), 2147483647)
                   - (SELECT count(*) FROM runs r
                      WHERE r.status = 'running' AND r.workflow_id = q.workflow_id
                        AND r.concurrency_key = q.concurrency_key) AS free,
                   (SELECT l.throttle - (SELECT count(*) FROM runs r
                                         WHERE r.workflow_id = q.workflow_id
                                           AND r.concurrency_key = q.concurrency_key
                                           AND r.first_started_at > :now - l.throttle_period)
                    FROM flow_limits l WHERE l.workflow_id = q.workflow_id) AS starts
            FROM runs q WHERE q.status = 'queued' AND q.concurrency_key IS NOT NULL
                          AND (q.start_by IS NULL OR q.start_by > :now)
        ) AS e
        WHERE e.first_started_at IS NOT NULL OR e.starts IS NULL OR e.u <= e.starts
    ) WHERE n <= free
) ORDER BY priority DESC, created_at LIMIT :limit;

UPDATE runs
SET status = 'running',
    recoveries = recoveries + (status = 'running' AND lease_owner IS NOT :worker_id),
    lease_owner = :worker_id,
    lease_token = lease_token + 1,
    lease_expires_at = :lease_until,
    wake_at = NULL,
    wait_reason = NULL,
    signaled = 0,
    start_by = NULL,
    first_started_at = coalesce(first_started_at, :now),
    updated_at = :now
WHERE id IN (SELECT id FROM temp.claimed);

INSERT INTO steps (run_id, step_key, kind, status, output, error, attempts, event_id,
                   started_at, completed_at)
SELECT run_id, step_key, kind, 'completed', 'null', NULL, 1, NULL, created_at, :now
FROM waits
WHERE run_id IN (SELECT id FROM temp.claimed) AND kind = 'sleep' AND wake_at <= :now
ON CONFLICT DO NOTHING;

DELETE FROM waits
WHERE run_id IN (SELECT id FROM temp.claimed) AND kind = 'sleep' AND wake_at <= :now;

SELECT r.id, r.workflow_id, r.event_id, r.event_name, r.event_data, r.event_ts, r.created_at,
       r.lease_token, r.recoveries, r.parent_run_id,
       h.step_key, h.kind, h.status, h.output, h.error, h.attempts, h.started_at,
       h.completed_at, h.wake_at, h.event_id AS step_event_id
FROM temp.claimed c JOIN runs r ON r.id = c.id
LEFT JOIN (
    SELECT run_id, step_key, kind, status, output, error, attempts, started_at, completed_at,
           NULL AS wake_at, event_id
    FROM steps WHERE run_id IN (SELECT id FROM temp.claimed)
    UNION ALL
    SELECT a.run_id, a.step_key, 'run', 'retrying', NULL, a.error, a.attempt, a.started_at,
           NULL, a.retry_at, NULL
    FROM step_attempts a
    WHERE a.run_id IN (SELECT id FROM temp.claimed)
      AND a.attempt = (SELECT max(attempt) FROM step_attempts b
                       WHERE b.run_id = a.run_id AND b.step_key = a.step_key)
      AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.run_id = a.run_id AND s.step_key = a.step_key)
    UNION ALL
    SELECT run_id, step_key, kind, 'waiting', NULL, NULL, 0, created_at, NULL, wake_at, NULL
    FROM waits WHERE run_id IN (SELECT id FROM temp.claimed)
) AS h ON h.run_id = r.id
ORDER BY r.created_at, r.id, h.started_at, h.completed_at, h.step_key

-- name: still_held
-- A read (runs_by_owner): which of these runs the worker still holds.
SELECT id FROM runs
WHERE lease_owner = :worker_id AND status = 'running'
  AND id IN (SELECT value FROM json_each(:run_ids))

-- name: heartbeat
UPDATE runs SET lease_expires_at = :lease_until
WHERE lease_owner = :worker_id AND status = 'running'
  AND id IN (SELECT value FROM json_each(:run_ids))
RETURNING id

-- name: load_history
SELECT step_key, kind, status, output, error, attempts, started_at, completed_at,
       NULL AS wake_at, event_id
FROM steps WHERE run_id = :run_id
UNION ALL
SELECT a.step_key, 'run', 'retrying', NULL, a.error, a.attempt, a.started_at, NULL,
       a.retry_at, NULL
FROM step_attempts a
WHERE a.run_id = :run_id
  AND a.attempt = (SELECT max(attempt) FROM step_attempts b
                   WHERE b.run_id = a.run_id AND b.step_key = a.step_key)
  AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.run_id = a.run_id AND s.step_key = a.step_key)
UNION ALL
SELECT step_key, kind, 'waiting', NULL, NULL, 0, created_at, NULL, wake_at, NULL
FROM waits WHERE run_id = :run_id
ORDER BY 7, 8, 1

-- name: load_attempts
-- Every failed attempt of the run's retried steps, for display (the claim reads only the last).
SELECT step_key, attempt, error, started_at, failed_at, retry_at
FROM step_attempts WHERE run_id = :run_id
ORDER BY step_key, attempt

-- name: record_step
INSERT INTO steps (run_id, step_key, kind, status, output, error, attempts, event_id,
                   started_at, completed_at)
SELECT :run_id, :key, :kind, :status, :output, :error, :attempts, :event_id, :started_at, :now
FROM runs WHERE id = :run_id AND {fence}
ON CONFLICT DO NOTHING

-- name: record_steps
-- Group commit: the record_step rows of many runs at once, each fenced by its own lease.
INSERT INTO steps (run_id, step_key, kind, status, output, error, attempts, event_id,
                   started_at, completed_at)
SELECT r.id, v.key, v.kind, v.status, v.output, v.error, v.attempts, v.event_id,
       v.started_at, v.now
FROM (SELECT value ->> '$.run_id' AS run_id, value ->> '$.lease_token' AS lease_token,
             value ->> '$.key' AS key, value ->> '$.kind' AS kind,
             value ->> '$.status' AS status, value ->> '$.output' AS output,
             value ->> '$.error' AS error, value ->> '$.attempts' AS attempts,
             value ->> '$.event_id' AS event_id, value ->> '$.started_at' AS started_at,
             value ->> '$.now' AS now
      FROM json_each(:steps)) AS v
JOIN runs r ON r.id = v.run_id AND {fence r v.lease_token}
WHERE true
ON CONFLICT DO NOTHING
RETURNING run_id, step_key

-- name: record_wait_step
-- As record_step, and the step's wait goes (one transaction, as every SQLite call).
DELETE FROM waits
WHERE run_id = :run_id AND step_key = :key
  AND EXISTS (SELECT 1 FROM runs
              WHERE id = :run_id AND {fence});
INSERT INTO steps (run_id, step_key, kind, status, output, error, attempts, event_id,
                   started_at, completed_at)
SELECT :run_id, :key, :kind, :status, :output, :error, :attempts, :event_id, :started_at, :now
FROM runs WHERE id = :run_id AND {fence}
ON CONFLICT DO NOTHING

-- name: record_attempt
INSERT INTO step_attempts (run_id, step_key, attempt, error, started_at, failed_at, retry_at)
SELECT :run_id, :key, :attempt, :error, :started_at, :now, :retry_at
FROM runs WHERE id = :run_id AND {fence}
ON CONFLICT DO NOTHING

-- name: holds_lease
SELECT 1 FROM runs WHERE id = :run_id AND {fence}

-- name: wait_state
-- As on PostgreSQL (writers are serialised: nothing to lock).
SELECT w.wake_at, s.run_id IS NOT NULL AS recorded, w.created_at, w.after_seq
FROM runs r
LEFT JOIN waits w ON w.run_id = r.id AND w.step_key = :key
LEFT JOIN steps s ON s.run_id = r.id AND s.step_key = :key
WHERE r.id = :run_id AND {fence r}

-- name: insert_wait
-- after_seq: events stored from now on get higher numbers (writers are serialised). The key is
-- made from the filter values as intake makes it from an event's data (canonical_json is the
-- engine's, registered by the store).
INSERT INTO waits (run_id, step_key, kind, wake_at, event_name, filter_paths, filter_key,
                   created_at, after_seq)
VALUES (:run_id, :key, :kind, :wake_at, :event_name, :filter_paths,
        canonical_json(:filter_values), :now, (SELECT coalesce(max(seq), 0) FROM events))
ON CONFLICT DO NOTHING

-- name: insert_wait_shape
INSERT INTO wait_shapes (event_name, filter_paths) VALUES (:event_name, :filter_paths)
ON CONFLICT DO NOTHING

-- name: candidate_events
SELECT seq, id, name, data, ts FROM events
WHERE name = :event_name AND received_at >= :since AND seq > :after_seq
  AND id <> :own_event_id
  AND id NOT IN (SELECT event_id FROM steps WHERE run_id = :run_id AND event_id IS NOT NULL)
ORDER BY seq
LIMIT :batch

-- name: suspend_run
UPDATE runs
SET status = CASE WHEN signaled = 1 THEN 'queued' ELSE 'waiting' END,
    wake_at = CASE WHEN signaled = 1 THEN NULL ELSE :wake_at END,
    wait_reason = :reason,
    signaled = 0,
    lease_owner = NULL,
    lease_expires_at = NULL,
    updated_at = :now
WHERE id = :run_id AND {fence}

-- name: finish_run
-- The run's pending waits go with it (deleted first, while the fence can still be checked).
DELETE FROM waits
WHERE run_id = :run_id
  AND EXISTS (SELECT 1 FROM runs
              WHERE id = :run_id AND {fence});

UPDATE runs
SET status = :status, result = :result, error = :error, completed_at = :now, updated_at = :now,
    wake_at = NULL, wait_reason = NULL, signaled = 0, lease_owner = NULL, lease_expires_at = NULL
WHERE id = :run_id AND {fence}
RETURNING workflow_id, parent_run_id

-- name: delete_run_waits
DELETE FROM waits WHERE run_id = :run_id

-- name: release_run
UPDATE runs
SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL, updated_at = :now
WHERE id = :run_id AND {fence}

-- name: next_wake_at
SELECT min(wake_at) AS wake_at FROM runs WHERE status = 'waiting'

-- name: get_run
SELECT id, workflow_id, status, event_id, event_name, event_data, event_ts, result, error,
       created_at, updated_at, completed_at, wake_at, recoveries, parent_run_id,
       idempotency_key, version,
       {shown_reason} AS wait_reason
FROM runs WHERE id = :run_id

-- name: list_runs
SELECT id, workflow_id, status, event_id, event_name, event_data, event_ts, result, error,
       created_at, updated_at, completed_at, wake_at, recoveries, parent_run_id,
       idempotency_key, version,
       {shown_reason} AS wait_reason
FROM runs
WHERE (:workflow_id IS NULL OR workflow_id = :workflow_id)
  AND (:status IS NULL OR status = :status)
  AND (:before_ts IS NULL OR created_at < :before_ts
       OR (created_at = :before_ts AND id < :before_id))
ORDER BY created_at DESC, id DESC
LIMIT :limit

-- name: cancel_run
UPDATE runs
SET status = 'cancelled', completed_at = :now, updated_at = :now, wake_at = NULL,
    wait_reason = NULL, signaled = 0, lease_owner = NULL, lease_expires_at = NULL,
    error = :error
WHERE id = :run_id AND status NOT IN ('completed', 'failed', 'cancelled')
RETURNING workflow_id, parent_run_id

-- name: cancel_children
-- One level of a cancelled tree: the unfinished runs the given runs invoked (runs_parent).
UPDATE runs
SET status = 'cancelled', completed_at = :now, updated_at = :now, wake_at = NULL,
    wait_reason = NULL, signaled = 0, lease_owner = NULL, lease_expires_at = NULL,
    error = :error
WHERE parent_run_id IN (SELECT value FROM json_each(:run_ids))
  AND status IN ('queued', 'running', 'waiting')
RETURNING id, workflow_id, parent_run_id

-- name: delete_waits_of_runs
DELETE FROM waits WHERE run_id IN (SELECT value FROM json_each(:run_ids))

-- name: cancel_matching
-- Bulk cancel: up to :batch unfinished runs matching the filters (NULL: any), oldest first.
UPDATE runs
SET status = 'cancelled', completed_at = :now, updated_at = :now, wake_at = NULL,
    wait_reason = NULL, signaled = 0, lease_owner = NULL, lease_expires_at = NULL,
    error = :error
WHERE id IN (SELECT id FROM runs
             WHERE status IN (SELECT value FROM json_each(:statuses))
               AND (:workflow_id IS NULL OR workflow_id = :workflow_id)
               AND (:created_after IS NULL OR created_at >= :created_after)
               AND (:created_before IS NULL OR created_at < :created_before)
             ORDER BY created_at, id
             LIMIT :batch)
  AND status IN ('queued', 'running', 'waiting')
RETURNING id, workflow_id, parent_run_id

-- name: get_event
SELECT id, name, data, ts FROM events WHERE id = :event_id

-- name: recent_events
-- The dashboard's events page: newest first, a page at a time (keyset on seq).
SELECT seq, id, name, data, ts FROM events
WHERE :before_seq IS NULL OR seq < :before_seq
ORDER BY seq DESC LIMIT :limit

-- name: event_runs
-- The runs an event started (runs_event) and those it resumed, a wait of theirs having taken
-- it (steps_by_event), up to `limit` of each, for the dashboard.
SELECT id, workflow_id, status, how FROM (
    SELECT id, workflow_id, status, 'started' AS how, created_at FROM runs
    WHERE event_id = :event_id ORDER BY created_at, id LIMIT :limit)
UNION ALL
SELECT id, workflow_id, status, how FROM (
    SELECT r.id, r.workflow_id, r.status, 'resumed' AS how, r.created_at
    FROM steps s JOIN runs r ON r.id = s.run_id
    WHERE s.event_id = :event_id ORDER BY r.created_at, r.id LIMIT :limit)

-- name: insert_webhook_rejection
INSERT INTO webhook_rejections (source, status, reason, body, body_bytes, received_at)
VALUES (:source, :status, :reason, :body, :body_bytes, :now)
RETURNING seq

-- name: prune_webhook_rejections
-- Keep the newest: seq grows by one a row, so those below the newest minus keep go.
DELETE FROM webhook_rejections WHERE seq <= :below

-- name: recent_webhook_rejections
SELECT seq, source, status, reason, body, body_bytes, received_at FROM webhook_rejections
WHERE :before_seq IS NULL OR seq < :before_seq
ORDER BY seq DESC LIMIT :limit

-- name: run_waits
-- What a run waits for, for the dashboard (the primary key's run_id prefix).
SELECT step_key, kind, event_name, filter_paths, filter_key, wake_at FROM waits
WHERE run_id = :run_id ORDER BY step_key LIMIT 100

-- name: event_waits
-- The approvals inbox: pending waits for one event name (waits_match), oldest first.
SELECT w.run_id, r.workflow_id, w.step_key, w.filter_key, w.wake_at, w.created_at
FROM waits w JOIN runs r ON r.id = w.run_id
WHERE w.event_name = :event_name
ORDER BY w.created_at, w.run_id, w.step_key
LIMIT :limit

-- name: run_status
SELECT status FROM runs WHERE id = :run_id

-- name: requeue_run
-- A retry. The lease token moves on: a worker still holding the finished run's execution
-- cannot take the next claim for its own, and that claim reads the run's history (PostgreSQL's
-- claim reads none for a token claimed the first time; a retry may have left a mark).
UPDATE runs
SET status = 'queued', error = NULL, result = NULL, completed_at = NULL, recoveries = 0,
    wake_at = NULL, wait_reason = NULL, signaled = 0, start_by = NULL, updated_at = :now,
    lease_token = lease_token + 1
WHERE id = :run_id AND status IN ('failed', 'cancelled')

-- name: forget_failed_steps
DELETE FROM steps WHERE run_id = :run_id AND status = 'failed'

-- name: forget_attempts
DELETE FROM step_attempts WHERE run_id = :run_id

-- name: forget_cancel_watches
-- A retry: the run's resolved cancel_on watches (its pending ones went with its waits when it
-- finished) and its earlier retry mark.
DELETE FROM steps WHERE run_id = :run_id AND kind = 'cancel'

-- name: mark_retried
-- The mark whose completed_at bounds the cancel_on watches registered after the retry.
INSERT INTO steps (run_id, step_key, kind, status, output, error, attempts, event_id,
                   started_at, completed_at)
VALUES (:run_id, :key, 'cancel', 'completed', NULL, NULL, 1, NULL, :now, :now)

-- name: finished_runs_before
SELECT id FROM runs
WHERE completed_at IS NOT NULL AND completed_at < :before
  AND status IN ('completed', 'failed', 'cancelled')
ORDER BY completed_at LIMIT :batch

-- name: purge_steps
DELETE FROM steps WHERE run_id = :run_id

-- name: purge_attempts
DELETE FROM step_attempts WHERE run_id = :run_id

-- name: purge_waits
DELETE FROM waits WHERE run_id = :run_id

-- name: purge_run
DELETE FROM runs WHERE id = :run_id

-- name: wait_shapes
-- Intake's first step: the filter shapes of waits on its events' names.
SELECT event_name, filter_paths FROM wait_shapes
WHERE event_name IN (SELECT value FROM json_each(:names))

-- name: lock_wait
-- Whether the wait's filter shape is registered. Nothing to lock: BEGIN IMMEDIATE serialises
-- the wait with every intake already.
SELECT EXISTS (SELECT 1 FROM wait_shapes
               WHERE event_name = :event_name AND filter_paths = :filter_paths) AS known

-- name: run_counts
SELECT workflow_id, status, count(*) AS count FROM runs
WHERE status IN ('queued', 'running', 'waiting')
GROUP BY workflow_id, status

-- name: purge_events
DELETE FROM events WHERE seq IN (
    SELECT seq FROM events WHERE received_at < :before ORDER BY seq LIMIT :batch)

-- name: register_worker
-- The worker's file is locked already (the store does that first).
INSERT INTO workers (id, lock_key, registered_at) VALUES (:worker_id, 0, :now)
ON CONFLICT (id) DO UPDATE SET lock_free_since = NULL
RETURNING lock_key

-- name: unregister_worker
DELETE FROM workers WHERE id = :worker_id

-- name: list_workers
SELECT id, registered_at FROM workers ORDER BY registered_at, id

-- name: reap_workers
-- A worker whose file the store could lock is dead: its row goes and the leases of its running
-- runs end now, for the next claim to take them over.
DELETE FROM workers WHERE id = :worker_id;
UPDATE runs SET lease_expires_at = 0 WHERE lease_owner = :worker_id AND status = 'running'
RETURNING id

-- name: lock_schedules
-- BEGIN IMMEDIATE already serialises writers: nothing more to lock.
SELECT 1

-- name: upsert_schedule
-- A schedule of the code: added, or changed in place (its next tick recomputed only if its
-- expression or zone changed: ticks missed meanwhile are caught up as its catch_up says). Paused
-- stays as it was. A row the code does not change is not written.
INSERT INTO schedules (id, workflow_id, expr, tz, catch_up, next_at, paused, updated_at)
VALUES (:id, :workflow_id, :expr, :tz, :catch_up, :next_at, 0, :now)
ON CONFLICT (id) DO UPDATE
SET workflow_id = excluded.workflow_id,
    next_at = CASE WHEN schedules.expr = excluded.expr AND schedules.tz = excluded.tz
                   THEN schedules.next_at ELSE excluded.next_at END,
    expr = excluded.expr,
    tz = excluded.tz,
    catch_up = excluded.catch_up,
    updated_at = excluded.updated_at
WHERE schedules.workflow_id <> excluded.workflow_id OR schedules.expr <> excluded.expr
   OR schedules.tz <> excluded.tz OR schedules.catch_up <> excluded.catch_up

-- name: delete_schedules_except
DELETE FROM schedules WHERE id NOT IN (SELECT value FROM json_each(:ids))

-- name: list_schedules
SELECT id, workflow_id, expr, tz, catch_up, next_at, paused, updated_at
FROM schedules ORDER BY id

-- name: get_schedule
SELECT id, workflow_id, expr, tz, catch_up, next_at, paused, updated_at
FROM schedules WHERE id = :id

-- name: due_schedules
SELECT id, workflow_id, expr, tz, catch_up, next_at, paused, updated_at
FROM schedules WHERE NOT paused AND next_at <= :now ORDER BY next_at, id

-- name: next_schedule_at
SELECT min(next_at) AS next_at FROM schedules WHERE NOT paused

-- name: advance_schedule
-- Compare-and-set: only the worker that read next_at as it still is moves it on.
UPDATE schedules SET next_at = :next_at, updated_at = :now
WHERE id = :id AND next_at = :expected AND NOT paused

-- name: pause_schedule
UPDATE schedules SET paused = 1, updated_at = :now WHERE id = :id

-- name: resume_schedule
-- Ticks that passed while paused are skipped: it goes on from next_at, the first tick from now.
UPDATE schedules SET paused = 0, next_at = :next_at, updated_at = :now
WHERE id = :id AND paused

-- name: lock_budget
-- BEGIN IMMEDIATE already serialises the takers; which of the takers (json [{run_id,
-- lease_token}]) are still held by their worker (the others take nothing).
SELECT r.id
FROM (SELECT value ->> '$.run_id' AS run_id, value ->> '$.lease_token' AS lease_token
      FROM json_each(:takers)) AS v
JOIN runs r ON r.id = v.run_id AND {fence r v.lease_token}

-- name: purge_budget_grants
-- A bounded number of expired grants, of any budget.
DELETE FROM budget_grants WHERE id IN (
    SELECT id FROM budget_grants WHERE expires_at <= :now ORDER BY expires_at LIMIT :batch)

-- name: budget_window
-- The latest `limit` grants of (budget, key) still in their window, latest first.
SELECT granted_at, returned_at, expires_at FROM budget_grants
WHERE budget = :budget AND key = :key AND expires_at > :now
ORDER BY expires_at DESC LIMIT :limit

-- name: budget_line
-- The runs in line for (budget, key): how many were promised a time still ahead, and which
-- of the takers' runs (json list of ids) are in line already, [run_id, step_key] each (they
-- are asking at their time: they keep their place).
SELECT coalesce(sum(wake_at > :now), 0) AS ahead,
       json_group_array(json_array(run_id, step_key))
           FILTER (WHERE run_id IN (SELECT value FROM json_each(:run_ids))) AS in_line
FROM budget_waits WHERE budget = :budget AND key = :key

-- name: join_budget_line
INSERT INTO budget_waits (budget, key, run_id, step_key, wake_at)
SELECT :budget, :key, value ->> '$.run_id', value ->> '$.step_key', value ->> '$.wake_at'
FROM json_each(:waits) WHERE true
ON CONFLICT (budget, key, run_id, step_key) DO UPDATE SET wake_at = excluded.wake_at

-- name: purge_budget_waits
-- A bounded number of places in line long past, of any budget.
DELETE FROM budget_waits WHERE rowid IN (
    SELECT rowid FROM budget_waits WHERE wake_at <= :before ORDER BY wake_at LIMIT :batch)

-- name: insert_budget_grants
-- One grant per taker (json [{run_id, step_key}]), dated now.
INSERT INTO budget_grants (budget, key, run_id, step_key, granted_at, expires_at)
SELECT :budget, :key, value ->> '$.run_id', value ->> '$.step_key', :now, :expires_at
FROM json_each(:grants) WHERE true
RETURNING id, run_id, step_key

-- name: return_budget_unit
-- The call has returned: the unit's window runs from now.
UPDATE budget_grants SET returned_at = :now, expires_at = :expires_at WHERE id = :id

-- name: rate_limited_waits
-- Runs waiting for a unit of a budget, by wait reason ("rate_limit <budget>/<key> (<step>)").
SELECT wait_reason, count(*) AS count FROM runs
WHERE status = 'waiting' AND wait_reason LIKE 'rate_limit %'
GROUP BY wait_reason

-- name: lock_flow_limits
-- BEGIN IMMEDIATE already serialises writers: nothing more to lock.
SELECT 1

-- name: upsert_flow_limit
INSERT INTO flow_limits (workflow_id, concurrency, throttle, throttle_period, updated_at)
VALUES (:workflow_id, :concurrency, :throttle, :throttle_period, :now)
ON CONFLICT (workflow_id) DO UPDATE
SET concurrency = excluded.concurrency, throttle = excluded.throttle,
    throttle_period = excluded.throttle_period, updated_at = excluded.updated_at
WHERE flow_limits.concurrency <> excluded.concurrency
   OR flow_limits.throttle IS NOT excluded.throttle
   OR flow_limits.throttle_period IS NOT excluded.throttle_period

-- name: delete_flow_limits_except
DELETE FROM flow_limits WHERE workflow_id NOT IN (SELECT value FROM json_each(:ids))

-- name: list_flow_limits
SELECT workflow_id, concurrency, throttle, throttle_period, updated_at
FROM flow_limits ORDER BY workflow_id

-- name: unstarted_runs
-- Queued runs never claimed by their start_by: a worker cancels them (start_timeout).
SELECT id FROM runs
WHERE status = 'queued' AND start_by IS NOT NULL AND start_by <= :now
ORDER BY start_by LIMIT :batch

-- name: expire_idempotency_key
-- A run's idempotency key past its window is given up, so a new run may take it.
UPDATE runs SET idempotency_key = NULL
WHERE workflow_id = :workflow_id AND idempotency_key = :idempotency_key
  AND created_at <= :before

-- name: rate_limited
-- Whether a rate-limited run may not be created: its key started its limit of runs within the
-- period (writers are serialised: nothing to lock).
SELECT count(*) >= :rate_limit AS full FROM runs
WHERE workflow_id = :workflow_id AND rate_key = :rate_key AND created_at > :now - :rate_period

-- name: held_counts
-- Per workflow and limit, the runs a flow limit holds back now: queued runs over their key's
-- concurrency limit or throttle, and debounced runs waiting for their key to go quiet.
SELECT h.workflow_id, substr(h.reason, 1, instr(h.reason, ' ') - 1) AS flow_limit,
       count(*) AS count
FROM (SELECT runs.workflow_id, {shown_reason} AS reason FROM runs
      WHERE runs.status = 'queued' AND runs.concurrency_key IS NOT NULL
      UNION ALL
      SELECT runs.workflow_id, runs.wait_reason FROM runs
      WHERE runs.status = 'waiting' AND runs.debounce_key IS NOT NULL) AS h
WHERE substr(h.reason, 1, instr(h.reason, ' ') - 1) IN ('concurrency', 'throttle', 'debounce')
GROUP BY h.workflow_id, substr(h.reason, 1, instr(h.reason, ' ') - 1)

-- name: set_run_version
-- A run's first attempt writes the version of the code it runs (once: a later attempt keeps it).
UPDATE runs SET version = :version
WHERE id = :run_id AND version IS NULL AND {fence}

-- name: unfinished_runs
-- A page of the unfinished runs, by id after the last one of the previous page (keyset
-- pagination over runs_unfinished), for the deploy check.
SELECT id, workflow_id, status, event_id, event_name, event_data, event_ts, created_at, version
FROM runs
WHERE status IN ('queued', 'running', 'waiting') AND id > :after
  AND (:workflow_id IS NULL OR workflow_id = :workflow_id)
ORDER BY id
LIMIT :limit

-- name: page_histories
-- The histories of a page of runs (as load_history, with each row's run).
SELECT run_id, step_key, kind, status, output, error, attempts, started_at, completed_at,
       NULL AS wake_at, event_id
FROM steps WHERE run_id IN (SELECT value FROM json_each(:run_ids))
UNION ALL
SELECT a.run_id, a.step_key, 'run', 'retrying', NULL, a.error, a.attempt, a.started_at, NULL,
       a.retry_at, NULL
FROM step_attempts a
WHERE a.run_id IN (SELECT value FROM json_each(:run_ids))
  AND a.attempt = (SELECT max(attempt) FROM step_attempts b
                   WHERE b.run_id = a.run_id AND b.step_key = a.step_key)
  AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.run_id = a.run_id AND s.step_key = a.step_key)
UNION ALL
SELECT run_id, step_key, kind, 'waiting', NULL, NULL, 0, created_at, NULL, wake_at, NULL
FROM waits WHERE run_id IN (SELECT value FROM json_each(:run_ids))
ORDER BY 1, 8, 9, 2
