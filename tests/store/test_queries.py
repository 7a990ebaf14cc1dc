"""Both dialects define the same queries, fragments and migrations."""

from __future__ import annotations

from dataflows.store.queries import load_fragments, load_migrations, load_queries

#: Queries of one dialect only: event intake and app.start's batches, which SQLite runs
#: statement by statement and PostgreSQL in its functions (in one round trip, or in two parts
#: inside a program), the NOTIFY PostgreSQL sends with a COMMIT, and a worker's offer of its
#: slots to intake in other processes (PostgreSQL only). Every other operation is one query name
#: on both.
ONLY_IN = {
    "postgres": {
        "intake_events",
        "lock_intake",
        "store_events",
        "notify_work",
        "offer_slots",
        "start_runs",
    },
    "sqlite": {
        "insert_run",
        "insert_runs",
        "expire_idempotency_key",
        "run_by_idempotency_key",
        "wait_shapes",
        "body_event",
        "remember_body",
        "forget_expired_bodies",
        "insert_event",
        "runs_of_event",
        "resolve_waits",
        "cancelled_by_intake",
        "debounce_run",
        "insert_debounced_run",
    },
}


def test_dialects_define_the_same_queries_but_for_intake() -> None:
    postgres, sqlite = set(load_queries("postgres")), set(load_queries("sqlite"))
    assert postgres - sqlite == ONLY_IN["postgres"]
    assert sqlite - postgres == ONLY_IN["sqlite"]
    assert len(postgres & sqlite) > 30


def test_dialects_have_the_same_migration_versions() -> None:
    sqlite = [(version, name) for version, name, _ in load_migrations("sqlite")]
    postgres = [(version, name) for version, name, _ in load_migrations("postgres")]
    assert sqlite == postgres
    assert [version for version, _ in sqlite] == list(range(1, len(sqlite) + 1))


def test_dialects_define_the_same_fragments_and_expand_them() -> None:
    fragments = ["fence", "shown_reason"]
    assert load_fragments("postgres") == load_fragments("sqlite") == fragments
    for dialect in ("postgres", "sqlite"):
        for name, text in load_queries(dialect).items():
            for fragment in fragments:
                assert "{" + fragment not in text, (dialect, name)
