-- dataflows schema: webhook deliveries refused (bad signature, unreadable, too large, unknown
-- source), newest kept only: the dashboard's events page lists them with the reason. The body
-- is kept only when small, never a source's secret.
CREATE TABLE webhook_rejections (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    source      TEXT NOT NULL,
    status      INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    body        TEXT,
    body_bytes  INTEGER,
    received_at REAL NOT NULL
);

-- The runs an event resumed (a wait step that took it), for the dashboard's events pages.
CREATE INDEX steps_by_event ON steps (event_id) WHERE event_id IS NOT NULL;
