-- dataflows schema, version 19: a worker's offer of free slots to event intake in other
-- processes (PostgreSQL hands woken runs over in its NOTIFY; SQLite keeps 0 here).
ALTER TABLE workers ADD COLUMN offered INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workers ADD COLUMN lease_seconds REAL NOT NULL DEFAULT 30;
