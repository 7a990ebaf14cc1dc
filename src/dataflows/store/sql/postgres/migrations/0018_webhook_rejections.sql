-- dataflows schema: webhook deliveries refused (bad signature, unreadable, too large, unknown
-- source), newest kept only: the dashboard's events page lists them with the reason. The body
-- is kept only when small, never a source's secret.
CREATE TABLE webhook_rejections (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source      text NOT NULL,
    status      integer NOT NULL,
    reason      text NOT NULL,
    body        text,
    body_bytes  bigint,
    received_at double precision NOT NULL
);

-- The runs an event resumed (a wait step that took it), for the dashboard's events pages.
CREATE INDEX steps_by_event ON steps (event_id) WHERE event_id IS NOT NULL;
