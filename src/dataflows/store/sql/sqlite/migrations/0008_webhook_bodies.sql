-- dataflows schema, version 8 (SQLite): the webhook bodies seen, for sources whose signature
-- covers the body but not the delivery id. Intake remembers a body with the event it became, in
-- the same transaction; the same body again before expires_at is a duplicate of that event.
-- Expired rows are taken over by the next delivery of their body or deleted by later intakes.
CREATE TABLE webhook_bodies (
    source     TEXT NOT NULL,
    digest     TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    seen_at    REAL NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (source, digest)
) WITHOUT ROWID;
CREATE INDEX webhook_bodies_expiry ON webhook_bodies (expires_at);
