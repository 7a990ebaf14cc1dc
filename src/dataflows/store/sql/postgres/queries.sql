-- Runtime queries for the PostgreSQL store, one named block each ("-- name: x"),
-- and the fragments they share ("-- fragment: x", used as {x}).
-- The SQLite file defines the same names with the same result columns for the operations both
-- dialects run the same way; a test keeps them in step. Event intake differs: here it is the
-- functions of migration 0006 (intake_events, lock_intake, store_events).
-- Tables are unqualified: every connection's search_path is the store's schema. Parameters that
-- may be NULL, or whose type PostgreSQL cannot infer, carry an explicit cast.

-- fragment: fence
-- The fence of every write a worker makes for a run: the run is still running under the lease
-- token the worker got when it claimed it. A worker that lost its lease (paused, partitioned,
-- slow) writes nothing. Queries say {fence}, or {fence r} for runs named r.
runs.lease_token = %(lease_token)s AND runs.status = 'running'

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

-- name: start_runs
-- A batch of app.start (group commit) in one round trip, in autocommit: the function (migration
-- 0020) gives up expired idempotency keys, inserts the runs and wakes the workers; it answers
-- the runs it did not create, with the run that holds each one's key or id.
SELECT n, id FROM start_runs(%(runs)s, %(expire)s, %(channel)s, %(sender)s)

-- name: claim_runs
-- The function (migration 0004) leases runnable runs for this worker and returns each with its
-- history, recording their due sleeps as elapsed; event intake calls it too (eager dispatch).
SELECT * FROM claim_runs(%(worker_id)s, %(limit)s, %(lease_until)s, %(now)s)

-- name: still_held
-- A read (runs_by_owner): which of these runs the worker still holds.
SELECT id FROM runs
WHERE lease_owner = %(worker_id)s AND status = 'running'
  AND id IN (SELECT jsonb_array_elements_text(%(run_ids)s::jsonb))

-- name: heartbeat
-- Rows locked in id order, as every multi-row writer does, so writers cannot deadlock.
UPDATE runs SET lease_expires_at = %(lease_until)s
WHERE id IN (SELECT id FROM runs
             WHERE lease_owner = %(worker_id)s AND status = 'running'
               AND id IN (SELECT jsonb_array_elements_text(%(run_ids)s::jsonb))
             ORDER BY id
             FOR UPDATE)
RETURNING id

-- name: load_history
SELECT step_key, kind, status, output, error, attempts, started_at, completed_at,
       NULL::double precision AS wake_at, event_id
FROM steps WHERE run_id = %(run_id)s
UNION ALL
SELECT a.step_key, 'run', 'retrying', NULL, a.error, a.attempt, a.started_at, NULL,
       a.retry_at, NULL
FROM step_attempts a
WHERE a.run_id = %(run_id)s
  AND a.attempt = (SELECT max(attempt) FROM step_attempts b
                   WHERE b.run_id = a.run_id AND b.step_key = a.step_key)
  AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.run_id = a.run_id AND s.step_key = a.step_key)
UNION ALL
SELECT step_key, kind, 'waiting', NULL, NULL, 0, created_at, NULL, wake_at, NULL
FROM waits WHERE run_id = %(run_id)s
ORDER BY 7, 8, 1

-- name: load_attempts
-- Every failed attempt of the run's retried steps, for display (the claim reads only the last).
SELECT step_key, attempt, error, started_at, failed_at, retry_at
FROM step_attempts WHERE run_id = %(run_id)s
ORDER BY step_key, attempt

-- name: record_step
-- FOR SHARE: a claim by another worker that is in flight makes this wait for it and then see
-- the new lease_token, so a worker that lost its lease cannot slip a write in (guarantee 3).
INSERT INTO steps (run_id, step_key, kind, status, output, error, attempts, event_id,
                   started_at, completed_at)
SELECT id, %(key)s, %(kind)s, %(status)s, %(output)s::text, %(error)s::text, %(attempts)s,
       %(event_id)s::text, %(started_at)s, %(now)s
FROM runs WHERE id = %(run_id)s AND {fence}
FOR SHARE
ON CONFLICT DO NOTHING

-- name: record_steps
-- Group commit: the record_step rows of many runs at once, each fenced by its own lease.
INSERT INTO steps (run_id, step_key, kind, status, output, error, attempts, event_id,
                   started_at, completed_at)
SELECT r.id, v.key, v.kind, v.status, v.output, v.error, v.attempts, v.event_id,
       v.started_at, v.now
FROM jsonb_to_recordset(%(steps)s::jsonb) AS v(
         run_id text, lease_token bigint, key text, kind text, status text, output text,
         error text, attempts int, event_id text, started_at double precision,
         now double precision)
JOIN runs r ON r.id = v.run_id AND {fence r v.lease_token}
FOR SHARE OF r
ON CONFLICT DO NOTHING
RETURNING run_id, step_key

-- name: record_wait_step
-- A wait's step recorded outside a wait program (a sleep waited out in the worker): the step
-- and the removal of its wait in one statement, fenced like record_step.
WITH recorded AS (
    INSERT INTO steps (run_id, step_key, kind, status, output, error, attempts, event_id,
                       started_at, completed_at)
    SELECT id, %(key)s, %(kind)s, %(status)s, %(output)s::text, %(error)s::text, %(attempts)s,
           %(event_id)s::text, %(started_at)s, %(now)s
    FROM runs WHERE id = %(run_id)s AND {fence}
    FOR SHARE
    ON CONFLICT DO NOTHING
    RETURNING run_id, step_key
), cleared AS (
    DELETE FROM waits
    WHERE run_id = %(run_id)s AND step_key = %(key)s AND EXISTS (SELECT 1 FROM recorded)
)
SELECT run_id FROM recorded

-- name: record_attempt
INSERT INTO step_attempts (run_id, step_key, attempt, error, started_at, failed_at, retry_at)
SELECT id, %(key)s, %(attempt)s, %(error)s, %(started_at)s, %(now)s, %(retry_at)s
FROM runs WHERE id = %(run_id)s AND {fence}
FOR SHARE
ON CONFLICT DO NOTHING

-- name: holds_lease
SELECT 1 FROM runs
WHERE id = %(run_id)s AND {fence}
FOR SHARE

-- name: wait_state
-- No row: this holder no longer holds the run (FOR SHARE, as in holds_lease). Else the wait's
-- recorded deadline, when it was first reached and where its event search resumes (NULLs if
-- not reached yet), or recorded = true if its step has been recorded (a retried call).
SELECT w.wake_at, s.run_id IS NOT NULL AS recorded, w.created_at, w.after_seq
FROM runs r
LEFT JOIN waits w ON w.run_id = r.id AND w.step_key = %(key)s
LEFT JOIN steps s ON s.run_id = r.id AND s.step_key = %(key)s
WHERE r.id = %(run_id)s AND {fence r}
FOR SHARE OF r

-- name: insert_wait
-- after_seq: events stored from now on get higher numbers (the caller holds the wait's lock).
-- The key is made from the filter values as intake makes it from an event's data.
INSERT INTO waits (run_id, step_key, kind, wake_at, event_name, filter_paths, filter_key,
                   created_at, after_seq)
VALUES (%(run_id)s, %(key)s, %(kind)s, %(wake_at)s::double precision, %(event_name)s::text,
        %(filter_paths)s::text, canonical_jsonb(%(filter_values)s::jsonb)::text, %(now)s,
        (SELECT coalesce(max(seq), 0) FROM events))
ON CONFLICT DO NOTHING

-- name: insert_wait_shape
INSERT INTO wait_shapes (event_name, filter_paths) VALUES (%(event_name)s, %(filter_paths)s)
ON CONFLICT DO NOTHING

-- name: candidate_events
SELECT seq, id, name, data, ts FROM events
WHERE name = %(event_name)s AND received_at >= %(since)s AND seq > %(after_seq)s
  AND id <> %(own_event_id)s
  AND data @> %(containment)s::jsonb
  AND id NOT IN (SELECT event_id FROM steps
                 WHERE run_id = %(run_id)s AND event_id IS NOT NULL)
ORDER BY seq
LIMIT %(batch)s

-- name: suspend_run
UPDATE runs
SET status = CASE WHEN signaled THEN 'queued' ELSE 'waiting' END,
    wake_at = CASE WHEN signaled THEN NULL ELSE %(wake_at)s::double precision END,
    wait_reason = %(reason)s,
    signaled = false,
    lease_owner = NULL,
    lease_expires_at = NULL,
    updated_at = %(now)s
WHERE id = %(run_id)s AND {fence}

-- name: finish_run
-- One statement (autocommit for a run without a parent): the run's pending waits go with it.
WITH finished AS (
    UPDATE runs
    SET status = %(status)s, result = %(result)s::text, error = %(error)s::text,
        completed_at = %(now)s, updated_at = %(now)s, wake_at = NULL, wait_reason = NULL,
        signaled = false, lease_owner = NULL, lease_expires_at = NULL
    WHERE id = %(run_id)s AND {fence}
    RETURNING id, workflow_id, parent_run_id
), cleared AS (
    DELETE FROM waits WHERE run_id IN (SELECT id FROM finished)
)
SELECT workflow_id, parent_run_id FROM finished

-- name: delete_run_waits
DELETE FROM waits WHERE run_id = %(run_id)s

-- name: release_run
UPDATE runs
SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL, updated_at = %(now)s
WHERE id = %(run_id)s AND {fence}

-- name: next_wake_at
SELECT min(wake_at) AS wake_at FROM runs WHERE status = 'waiting'

-- name: get_run
SELECT id, workflow_id, status, event_id, event_name, event_data, event_ts, result, error,
       created_at, updated_at, completed_at, wake_at, recoveries, parent_run_id,
       idempotency_key, version,
       {shown_reason} AS wait_reason
FROM runs WHERE id = %(run_id)s

-- name: list_runs
SELECT id, workflow_id, status, event_id, event_name, event_data, event_ts, result, error,
       created_at, updated_at, completed_at, wake_at, recoveries, parent_run_id,
       idempotency_key, version,
       {shown_reason} AS wait_reason
FROM runs
WHERE (%(workflow_id)s::text IS NULL OR workflow_id = %(workflow_id)s::text)
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(before_ts)s::double precision IS NULL
       OR created_at < %(before_ts)s::double precision
       OR (created_at = %(before_ts)s::double precision AND id < %(before_id)s::text))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s

-- name: cancel_run
UPDATE runs
SET status = 'cancelled', completed_at = %(now)s, updated_at = %(now)s, wake_at = NULL,
    wait_reason = NULL, signaled = false, lease_owner = NULL, lease_expires_at = NULL,
    error = %(error)s
WHERE id = %(run_id)s AND status NOT IN ('completed', 'failed', 'cancelled')
RETURNING workflow_id, parent_run_id

-- name: cancel_children
-- One level of a cancelled tree: the unfinished runs the given runs invoked (runs_parent),
-- locked in id order as every multi-row writer does.
UPDATE runs
SET status = 'cancelled', completed_at = %(now)s, updated_at = %(now)s, wake_at = NULL,
    wait_reason = NULL, signaled = false, lease_owner = NULL, lease_expires_at = NULL,
    error = %(error)s
WHERE id IN (SELECT id FROM runs
             WHERE parent_run_id IN (SELECT jsonb_array_elements_text(%(run_ids)s::jsonb))
               AND status IN ('queued', 'running', 'waiting')
             ORDER BY id
             FOR UPDATE)
  AND status IN ('queued', 'running', 'waiting')
RETURNING id, workflow_id, parent_run_id

-- name: delete_waits_of_runs
DELETE FROM waits WHERE run_id IN (SELECT jsonb_array_elements_text(%(run_ids)s::jsonb))

-- name: cancel_matching
-- Bulk cancel: up to :batch unfinished runs matching the filters (NULL: any), oldest first,
-- locked in id order as every multi-row writer does.
UPDATE runs
SET status = 'cancelled', completed_at = %(now)s, updated_at = %(now)s, wake_at = NULL,
    wait_reason = NULL, signaled = false, lease_owner = NULL, lease_expires_at = NULL,
    error = %(error)s
WHERE id IN (SELECT id FROM runs
             WHERE id IN (SELECT id FROM runs
                          WHERE status IN (SELECT jsonb_array_elements_text(%(statuses)s::jsonb))
                            AND (%(workflow_id)s::text IS NULL
                                 OR workflow_id = %(workflow_id)s::text)
                            AND (%(created_after)s::double precision IS NULL
                                 OR created_at >= %(created_after)s::double precision)
                            AND (%(created_before)s::double precision IS NULL
                                 OR created_at < %(created_before)s::double precision)
                          ORDER BY created_at, id
                          LIMIT %(batch)s)
             ORDER BY id
             FOR UPDATE)
  AND status IN ('queued', 'running', 'waiting')
RETURNING id, workflow_id, parent_run_id

-- name: get_event
SELECT id, name, data, ts FROM events WHERE id = %(event_id)s

-- name: recent_events
-- The dashboard's events page: newest first, a page at a time (keyset on seq).
SELECT seq, id, name, data, ts FROM events
WHERE %(before_seq)s::bigint IS NULL OR seq < %(before_seq)s::bigint
ORDER BY seq DESC LIMIT %(limit)s

-- name: event_runs
-- The runs an event started (runs_event) and those it resumed, a wait of theirs having taken
-- it (steps_by_event), up to `limit` of each, for the dashboard.
SELECT id, workflow_id, status, how FROM (
    SELECT id, workflow_id, status, 'started' AS how, created_at FROM runs
    WHERE event_id = %(event_id)s ORDER BY created_at, id LIMIT %(limit)s) AS started
UNION ALL
SELECT id, workflow_id, status, how FROM (
    SELECT r.id, r.workflow_id, r.status, 'resumed' AS how, r.created_at
    FROM steps s JOIN runs r ON r.id = s.run_id
    WHERE s.event_id = %(event_id)s ORDER BY r.created_at, r.id LIMIT %(limit)s) AS resumed

-- name: insert_webhook_rejection
INSERT INTO webhook_rejections (source, status, reason, body, body_bytes, received_at)
VALUES (%(source)s, %(status)s, %(reason)s, %(body)s, %(body_bytes)s, %(now)s)
RETURNING seq

-- name: prune_webhook_rejections
-- Keep the newest: seq grows by one a row, so those below the newest minus keep go.
DELETE FROM webhook_rejections WHERE seq <= %(below)s

-- name: recent_webhook_rejections
SELECT seq, source, status, reason, body, body_bytes, received_at FROM webhook_rejections
WHERE %(before_seq)s::bigint IS NULL OR seq < %(before_seq)s::bigint
ORDER BY seq DESC LIMIT %(limit)s

-- name: run_waits
-- What a run waits for, for the dashboard (the primary key's run_id prefix).
SELECT step_key, kind, event_name, filter_paths, filter_key, wake_at FROM waits
WHERE run_id = %(run_id)s ORDER BY step_key LIMIT 100

-- name: event_waits
-- The approvals inbox: pending waits for one event name (waits_match), oldest first.
SELECT w.run_id, r.workflow_id, w.step_key, w.filter_key, w.wake_at, w.created_at
FROM waits w JOIN runs r ON r.id = w.run_id
WHERE w.event_name = %(event_name)s
ORDER BY w.created_at, w.run_id, w.step_key
LIMIT %(limit)s

-- name: run_status
SELECT status FROM runs WHERE id = %(run_id)s

-- name: requeue_run
-- A retry. The lease token moves on: a worker still holding the finished run's execution
-- cannot take the next claim for its own, and that claim reads the run's history (PostgreSQL's
-- claim reads none for a token claimed the first time; a retry may have left a mark).
UPDATE runs
SET status = 'queued', error = NULL, result = NULL, completed_at = NULL, recoveries = 0,
    wake_at = NULL, wait_reason = NULL, signaled = false, start_by = NULL, updated_at = %(now)s,
    lease_token = lease_token + 1
WHERE id = %(run_id)s AND status IN ('failed', 'cancelled')

-- name: forget_failed_steps
DELETE FROM steps WHERE run_id = %(run_id)s AND status = 'failed'

-- name: forget_attempts
DELETE FROM step_attempts WHERE run_id = %(run_id)s

-- name: forget_cancel_watches
-- A retry: the run's resolved cancel_on watches (its pending ones went with its waits when it
-- finished) and its earlier retry mark.
DELETE FROM steps WHERE run_id = %(run_id)s AND kind = 'cancel'

-- name: mark_retried
-- The mark whose completed_at bounds the cancel_on watches registered after the retry.
INSERT INTO steps (run_id, step_key, kind, status, output, error, attempts, event_id,
                   started_at, completed_at)
VALUES (%(run_id)s, %(key)s, 'cancel', 'completed', NULL, NULL, 1, NULL, %(now)s, %(now)s)

-- name: finished_runs_before
SELECT id FROM runs
WHERE completed_at IS NOT NULL AND completed_at < %(before)s
  AND status IN ('completed', 'failed', 'cancelled')
ORDER BY completed_at LIMIT %(batch)s

-- name: purge_steps
DELETE FROM steps WHERE run_id = %(run_id)s

-- name: purge_attempts
DELETE FROM step_attempts WHERE run_id = %(run_id)s

-- name: purge_waits
DELETE FROM waits WHERE run_id = %(run_id)s

-- name: purge_run
DELETE FROM runs WHERE id = %(run_id)s

-- name: lock_wait
-- A wait serialises with the intakes of the events that can resolve it: by its key's lock if
-- its filter shape is registered (every intake since has read the shape and takes that key's
-- lock), else by its name's lock, exclusive, while it registers the shape. One lock, never two,
-- so waits cannot deadlock with intakes. The key and the locks' names come from the same SQL
-- functions intake uses (migration 0006). Returns whether the shape was registered already.
SELECT s.known, pg_advisory_xact_lock(CASE
           WHEN s.known THEN wait_key_lock(%(event_name)s, %(filter_paths)s,
                                           canonical_jsonb(%(filter_values)s::jsonb)::text)
           ELSE event_name_lock(%(event_name)s) END)
FROM (SELECT EXISTS (SELECT 1 FROM wait_shapes
                     WHERE event_name = %(event_name)s AND filter_paths = %(filter_paths)s)
             AS known
      OFFSET 0) AS s

-- name: notify_work
-- Sent once per transaction that asks for it, with the COMMIT in one round trip (the simple
-- protocol: the backend fills in its schema's channel and its own token as literals; its
-- listener skips notifications it sent itself, having woken its own workers already).
SELECT pg_notify({channel}, {sender}); COMMIT

-- name: run_counts
SELECT workflow_id, status, count(*) AS count FROM runs
WHERE status IN ('queued', 'running', 'waiting')
GROUP BY workflow_id, status

-- name: purge_events
DELETE FROM events WHERE seq IN (
    SELECT seq FROM events WHERE received_at < %(before)s ORDER BY seq LIMIT %(batch)s)

-- name: intake_events
-- Event intake in one round trip (nothing else in its transaction): the function (migration
-- 0006) locks, reads the filter shapes and computes the wait keys, stores the events, starts
-- their runs, resolves their waits, notifies workers and, given a claim, claims runs for that
-- worker (eager dispatch).
SELECT intake_events(%(events)s::jsonb, %(channel)s, %(sender)s, %(claim)s::jsonb) AS answer

-- name: lock_intake
-- Intake inside a program's transaction, first part: the locks, and per event its wait keys.
SELECT lock_intake(%(events)s::jsonb) AS keys

-- name: store_events
-- Second part: store the events under those locks (the program notifies workers on commit).
SELECT store_events(%(events)s::jsonb, %(keys)s::jsonb) AS answer

-- name: register_worker
-- On the store's liveness connection: take a fresh key's advisory lock and, in the same
-- statement (so the row is seen only once the lock is held), record the worker under it.
INSERT INTO workers (id, lock_key, registered_at)
SELECT %(worker_id)s, k.key, %(now)s
FROM (SELECT nextval('worker_lock_keys')::integer AS key OFFSET 0) AS k
WHERE pg_try_advisory_lock(%(lock_class)s, k.key)
ON CONFLICT (id) DO UPDATE SET lock_key = excluded.lock_key, lock_free_since = NULL
RETURNING lock_key

-- name: unregister_worker
-- A worker stopping: its row goes, and (on the liveness connection) its lock. It has finished or
-- given back every run it began, so a run still leased to it was claimed for it by an intake
-- whose notification it never read: that run goes back to the queue.
WITH gone AS (DELETE FROM workers WHERE id = %(worker_id)s RETURNING lock_key),
strays AS (
    UPDATE runs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL
    WHERE lease_owner = %(worker_id)s AND status = 'running'
)
SELECT pg_advisory_unlock(%(lock_class)s, lock_key) FROM gone

-- name: offer_slots
-- An idle worker offers its free slots to event intake in other processes (0: withdrawn).
UPDATE workers SET offered = %(offered)s, lease_seconds = %(lease_seconds)s
WHERE id = %(worker_id)s

-- name: list_workers
SELECT id, registered_at FROM workers ORDER BY registered_at, id

-- name: reap_workers
-- Workers whose lock no session holds: their process died, or lost its connection for a moment.
-- Seen free the first time, a worker is marked; still free `grace` seconds later (time enough
-- for a live one to reconnect and lock again), it is removed and the leases of its running runs
-- end now, for the next claim to take them over. Rows another reaper holds are skipped.
-- Answers the runs taken over ('run') and the workers seen free still within the grace
-- ('worker', with the time their lock was first seen free: the reaper looks again right then).
WITH free AS (
    SELECT w.id, w.lock_free_since FROM workers w
    WHERE NOT EXISTS (
        SELECT 1 FROM pg_locks l
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.classid::bigint = %(lock_class_oid)s AND l.objid::bigint = w.lock_key)
    FOR UPDATE OF w SKIP LOCKED
), marked AS (
    UPDATE workers SET lock_free_since = %(now)s
    FROM free WHERE workers.id = free.id AND free.lock_free_since IS NULL
), dead AS (
    DELETE FROM workers USING free
    WHERE workers.id = free.id AND free.lock_free_since <= %(now)s - %(grace)s
    RETURNING workers.id
), taken AS (
    UPDATE runs SET lease_expires_at = 0
    FROM dead WHERE runs.lease_owner = dead.id AND runs.status = 'running'
    RETURNING runs.id
)
SELECT 'run' AS kind, id, NULL::double precision AS free_since FROM taken
UNION ALL
SELECT 'worker', id, coalesce(lock_free_since, %(now)s) FROM free
WHERE lock_free_since IS NULL OR lock_free_since > %(now)s - %(grace)s

-- name: lock_schedules
-- Held while a worker writes the schedules of its code, so that workers starting together (with
-- different code, in a deploy) write one after the other instead of deadlocking.
SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || '/schedules', 0))

-- name: upsert_schedule
-- A schedule of the code: added, or changed in place (its next tick recomputed only if its
-- expression or zone changed: ticks missed meanwhile are caught up as its catch_up says). Paused
-- stays as it was. A row the code does not change is not written.
INSERT INTO schedules (id, workflow_id, expr, tz, catch_up, next_at, paused, updated_at)
VALUES (%(id)s, %(workflow_id)s, %(expr)s, %(tz)s, %(catch_up)s, %(next_at)s, false, %(now)s)
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
DELETE FROM schedules WHERE id NOT IN (SELECT jsonb_array_elements_text(%(ids)s::jsonb))

-- name: list_schedules
SELECT id, workflow_id, expr, tz, catch_up, next_at, paused, updated_at
FROM schedules ORDER BY id

-- name: get_schedule
SELECT id, workflow_id, expr, tz, catch_up, next_at, paused, updated_at
FROM schedules WHERE id = %(id)s

-- name: due_schedules
SELECT id, workflow_id, expr, tz, catch_up, next_at, paused, updated_at
FROM schedules WHERE NOT paused AND next_at <= %(now)s ORDER BY next_at, id

-- name: next_schedule_at
SELECT min(next_at) AS next_at FROM schedules WHERE NOT paused

-- name: advance_schedule
-- Compare-and-set: only the worker that read next_at as it still is moves it on.
UPDATE schedules SET next_at = %(next_at)s, updated_at = %(now)s
WHERE id = %(id)s AND next_at = %(expected)s AND NOT paused

-- name: pause_schedule
UPDATE schedules SET paused = true, updated_at = %(now)s WHERE id = %(id)s

-- name: resume_schedule
-- Ticks that passed while paused are skipped: it goes on from next_at, the first tick from now.
UPDATE schedules SET paused = false, next_at = %(next_at)s, updated_at = %(now)s
WHERE id = %(id)s AND paused

-- name: lock_budget
-- Serialises the takers of one (budget, key) until commit, and answers which of the takers
-- (json [{run_id, lease_token}]) are still held by their worker (the others take nothing).
SELECT r.id, pg_advisory_xact_lock(
           hashtextextended(current_schema() || '/budget/' || %(budget)s || '/' || %(key)s, 0))
FROM jsonb_to_recordset(%(takers)s::jsonb) AS v(run_id text, lease_token bigint)
JOIN runs r ON r.id = v.run_id AND {fence r v.lease_token}
FOR SHARE OF r

-- name: purge_budget_grants
-- A bounded number of expired grants, of any budget; rows another taker is deleting are skipped.
DELETE FROM budget_grants WHERE id IN (
    SELECT id FROM budget_grants WHERE expires_at <= %(now)s
    ORDER BY expires_at LIMIT %(batch)s FOR UPDATE SKIP LOCKED)

-- name: budget_window
-- The latest `limit` grants of (budget, key) still in their window, latest first.
SELECT granted_at, returned_at, expires_at FROM budget_grants
WHERE budget = %(budget)s AND key = %(key)s AND expires_at > %(now)s
ORDER BY expires_at DESC LIMIT %(limit)s

-- name: budget_line
-- The runs in line for (budget, key): how many were promised a time still ahead, and which
-- of the takers' runs (json list of ids) are in line already, [run_id, step_key] each (they
-- are asking at their time: they keep their place).
SELECT count(*) FILTER (WHERE wake_at > %(now)s) AS ahead,
       coalesce(json_agg(json_build_array(run_id, step_key))
                FILTER (WHERE run_id IN (SELECT jsonb_array_elements_text(%(run_ids)s::jsonb))),
                '[]') AS in_line
FROM budget_waits WHERE budget = %(budget)s AND key = %(key)s

-- name: join_budget_line
INSERT INTO budget_waits (budget, key, run_id, step_key, wake_at)
SELECT %(budget)s, %(key)s, v.run_id, v.step_key, v.wake_at
FROM jsonb_to_recordset(%(waits)s::jsonb) AS v(run_id text, step_key text, wake_at double precision)
ON CONFLICT (budget, key, run_id, step_key) DO UPDATE SET wake_at = excluded.wake_at

-- name: purge_budget_waits
-- A bounded number of places in line long past, of any budget; rows being deleted are skipped.
DELETE FROM budget_waits WHERE ctid IN (
    SELECT ctid FROM budget_waits WHERE wake_at <= %(before)s
    ORDER BY wake_at LIMIT %(batch)s FOR UPDATE SKIP LOCKED)

-- name: insert_budget_grants
-- One grant per taker (json [{run_id, step_key}]), dated now.
INSERT INTO budget_grants (budget, key, run_id, step_key, granted_at, expires_at)
SELECT %(budget)s, %(key)s, v.run_id, v.step_key, %(now)s, %(expires_at)s
FROM jsonb_to_recordset(%(grants)s::jsonb) AS v(run_id text, step_key text)
RETURNING id, run_id, step_key

-- name: return_budget_unit
-- The call has returned: the unit's window runs from now.
UPDATE budget_grants SET returned_at = %(now)s, expires_at = %(expires_at)s WHERE id = %(id)s

-- name: rate_limited_waits
-- Runs waiting for a unit of a budget, by wait reason ("rate_limit <budget>/<key> (<step>)").
SELECT wait_reason, count(*) AS count FROM runs
WHERE status = 'waiting' AND wait_reason LIKE 'rate_limit %%'
GROUP BY wait_reason

-- name: lock_flow_limits
-- Held while a worker writes the limits of its code (as lock_schedules).
SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || '/flow_limits', 0))

-- name: upsert_flow_limit
INSERT INTO flow_limits (workflow_id, concurrency, throttle, throttle_period, updated_at)
VALUES (%(workflow_id)s, %(concurrency)s, %(throttle)s, %(throttle_period)s, %(now)s)
ON CONFLICT (workflow_id) DO UPDATE
SET concurrency = excluded.concurrency, throttle = excluded.throttle,
    throttle_period = excluded.throttle_period, updated_at = excluded.updated_at
WHERE flow_limits.concurrency <> excluded.concurrency
   OR flow_limits.throttle IS DISTINCT FROM excluded.throttle
   OR flow_limits.throttle_period IS DISTINCT FROM excluded.throttle_period

-- name: delete_flow_limits_except
DELETE FROM flow_limits
WHERE workflow_id NOT IN (SELECT jsonb_array_elements_text(%(ids)s::jsonb))

-- name: list_flow_limits
SELECT workflow_id, concurrency, throttle, throttle_period, updated_at
FROM flow_limits ORDER BY workflow_id

-- name: unstarted_runs
-- Queued runs never claimed by their start_by: a worker cancels them (start_timeout).
SELECT id FROM runs
WHERE status = 'queued' AND start_by IS NOT NULL AND start_by <= %(now)s
ORDER BY start_by LIMIT %(batch)s

-- name: rate_limited
-- Whether a rate-limited run may not be created: its key started its limit of runs within the
-- period (PostgreSQL's store_events counts the same way, under the key's lock).
SELECT count(*) >= %(rate_limit)s AS full FROM runs
WHERE workflow_id = %(workflow_id)s AND rate_key = %(rate_key)s
  AND created_at > %(now)s - %(rate_period)s

-- name: held_counts
-- Per workflow and limit, the runs a flow limit holds back now: queued runs over their key's
-- concurrency limit or throttle, and debounced runs waiting for their key to go quiet.
SELECT h.workflow_id, split_part(h.reason, ' ', 1) AS flow_limit, count(*) AS count
FROM (SELECT runs.workflow_id, {shown_reason} AS reason FROM runs
      WHERE runs.status = 'queued' AND runs.concurrency_key IS NOT NULL
      UNION ALL
      SELECT runs.workflow_id, runs.wait_reason FROM runs
      WHERE runs.status = 'waiting' AND runs.debounce_key IS NOT NULL) AS h
WHERE split_part(h.reason, ' ', 1) IN ('concurrency', 'throttle', 'debounce')
GROUP BY h.workflow_id, split_part(h.reason, ' ', 1)

-- name: set_run_version
-- A run's first attempt writes the version of the code it runs (once: a later attempt keeps it).
UPDATE runs SET version = %(version)s
WHERE id = %(run_id)s AND version IS NULL AND {fence}

-- name: unfinished_runs
-- A page of the unfinished runs, by id after the last one of the previous page (keyset
-- pagination over runs_unfinished), for the deploy check.
SELECT id, workflow_id, status, event_id, event_name, event_data, event_ts, created_at, version
FROM runs
WHERE status IN ('queued', 'running', 'waiting') AND id > %(after)s
  AND (%(workflow_id)s::text IS NULL OR workflow_id = %(workflow_id)s::text)
ORDER BY id
LIMIT %(limit)s

-- name: page_histories
-- The histories of a page of runs (as load_history, with each row's run).
SELECT run_id, step_key, kind, status, output, error, attempts, started_at, completed_at,
       NULL::double precision AS wake_at, event_id
FROM steps WHERE run_id IN (SELECT jsonb_array_elements_text(%(run_ids)s::jsonb))
UNION ALL
SELECT a.run_id, a.step_key, 'run', 'retrying', NULL, a.error, a.attempt, a.started_at, NULL,
       a.retry_at, NULL
FROM step_attempts a
WHERE a.run_id IN (SELECT jsonb_array_elements_text(%(run_ids)s::jsonb))
  AND a.attempt = (SELECT max(attempt) FROM step_attempts b
                   WHERE b.run_id = a.run_id AND b.step_key = a.step_key)
  AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.run_id = a.run_id AND s.step_key = a.step_key)
UNION ALL
SELECT run_id, step_key, kind, 'waiting', NULL, NULL, 0, created_at, NULL, wake_at, NULL
FROM waits WHERE run_id IN (SELECT jsonb_array_elements_text(%(run_ids)s::jsonb))
ORDER BY 1, 8, 9, 2
