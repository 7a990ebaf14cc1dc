-- dataflows schema, version 11 (SQLite): shared step budgets (app.rate_limit).

-- Shared step budgets: one row per unit taken (a sliding log). A unit of (budget, key) is granted
-- while fewer than the budget's limit of its rows have expires_at ahead: returned_at + period
-- once the call has returned, granted_at + 2 * period until then (a worker that died during the
-- call). Takers of one (budget, key) are serialised by BEGIN IMMEDIATE. Expired rows are
-- deleted, a bounded number at a time, by later takers.
CREATE TABLE budget_grants (
    id          INTEGER PRIMARY KEY,
    budget      TEXT NOT NULL,
    key         TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    step_key    TEXT NOT NULL,
    granted_at  REAL NOT NULL,
    returned_at REAL,
    expires_at  REAL NOT NULL
);
CREATE INDEX budget_grants_window ON budget_grants (budget, key, expires_at);
CREATE INDEX budget_grants_expiry ON budget_grants (expires_at);
