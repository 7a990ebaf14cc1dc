-- dataflows schema, version 7 (PostgreSQL): workers say they are alive by holding a lock.
-- Runs with search_path set to the store's schema.

-- Each worker holds a session-level advisory lock (the store's namespace, lock_key) on a
-- connection of its own for as long as its process lives; PostgreSQL releases it the moment that
-- session ends (the process died, was OOM-killed, or its host reset the connection). A worker
-- whose lock no session holds is seen free (lock_free_since) and, still free a moment later,
-- removed, and the leases of its running runs end at once: the next claim takes them over. A
-- paused worker keeps its session and its lock, so its runs wait for the lease to expire, and the
-- lease token still fences whatever it writes when it wakes.
CREATE SEQUENCE worker_lock_keys AS integer MINVALUE 1 CYCLE;

CREATE TABLE workers (
    id              text PRIMARY KEY,
    lock_key        integer NOT NULL,
    registered_at   double precision NOT NULL,
    lock_free_since double precision
);
