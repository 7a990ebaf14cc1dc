-- dataflows schema, version 7 (SQLite): workers say they are alive by holding a lock.

-- Each worker holds an exclusive lock (flock) on a file of its own beside the database for as
-- long as its process lives; the operating system releases it the moment the process ends. A
-- worker whose file another worker can lock is dead: it is removed and the leases of its
-- running runs end at once, for the next claim to take them over. A paused worker keeps its
-- lock, so its runs wait for the lease to expire, and the lease token still fences whatever it
-- writes when it wakes. lock_key and lock_free_since serve PostgreSQL's advisory locks; here
-- they stay 0 and NULL.
CREATE TABLE workers (
    id              TEXT PRIMARY KEY,
    lock_key        INTEGER NOT NULL,
    registered_at   REAL NOT NULL,
    lock_free_since REAL
);
