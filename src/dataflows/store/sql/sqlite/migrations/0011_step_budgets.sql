-- dataflows schema, version 11 (SQLite): shared step budgets (app.rate_limit).

-- Shared step budgets: one row per unit taken (a sliding log). A unit of (budget, key) is granted
-- while fewer than the budget's limit of its rows have expires_at (granted_at + period) ahead;
-- takers of one (budget, key) are serialised by BEGIN IMMEDIATE. Expired rows are deleted, a
-- bounded number at a time, by later takers.
CREATE TABLE budget_grants (
    id         INTEGER PRIMARY KEY,
    budget     TEXT NOT NULL,
    key        TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    step_key   TEXT NOT NULL,
    granted_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX budget_grants_window ON budget_grants (budget, key, expires_at);
CREATE INDEX budget_grants_expiry ON budget_grants (expires_at);
