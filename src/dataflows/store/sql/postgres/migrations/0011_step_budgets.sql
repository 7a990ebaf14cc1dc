-- dataflows schema, version 11 (PostgreSQL): shared step budgets (app.rate_limit).
-- Runs with search_path set to the store's schema.

-- Shared step budgets: one row per unit taken (a sliding log). A unit of (budget, key) is granted
-- while fewer than the budget's limit of its rows have expires_at ahead: returned_at + period
-- once the call has returned, granted_at + 2 * period until then (a worker that died during the
-- call). Takers of one (budget, key) are serialised by an advisory lock. Expired rows are
-- deleted, a bounded number at a time, by later takers.
CREATE TABLE budget_grants (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    budget      text NOT NULL,
    key         text NOT NULL,
    run_id      text NOT NULL,
    step_key    text NOT NULL,
    granted_at  double precision NOT NULL,
    returned_at double precision,
    expires_at  double precision NOT NULL
);
CREATE INDEX budget_grants_window ON budget_grants (budget, key, expires_at);
CREATE INDEX budget_grants_expiry ON budget_grants (expires_at);
