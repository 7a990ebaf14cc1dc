"""How fast the dashboard renders at scale: PostgreSQL filled with 100,000 runs and 1,000,000 steps,
then the server-side time of the runs list (unfiltered, filtered, an older page), a run page,
the workflows page and the events page, each requested in-process (no network) many times.

    python -m bench.dashboard [--database-url postgresql://postgres@127.0.0.1:5432/test]
                              [--runs 100000] [--steps 10] [--repeat 30]

The data goes into its own schema (``dataflows_dashboard_bench``), filled by SQL once and reused
while it holds as many runs as asked for.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import httpx
import psycopg

import dataflows as df
from dataflows.http import create_api

SCHEMA = "dataflows_dashboard_bench"
HTML = {"Accept": "text/html"}
STATUSES = ["completed"] * 7 + ["failed", "waiting", "cancelled"]


def build_app(url: str) -> df.Dataflows:
    app = df.Dataflows(url, schema=SCHEMA)
    for name in ("orders", "invoices", "emails"):

        @app.workflow(name, trigger=df.on_event(f"{name}.created"))
        async def flow(event: df.Event, step: df.Step) -> Any:
            return await step.run("work", lambda: 1)

    return app


def fill(url: str, runs: int, steps: int) -> None:
    """``runs`` runs over three workflows, one a second, each with ``steps`` completed steps."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"SET search_path TO {SCHEMA}")
        have = conn.execute("SELECT count(*) FROM runs").fetchone()
        if have is not None and have[0] == runs:
            print(f"reusing {runs:,} runs in schema {SCHEMA}")
            return
        started = time.perf_counter()
        conn.execute("TRUNCATE runs, steps, events")
        statuses = "ARRAY[" + ",".join(f"'{s}'" for s in STATUSES) + "]"
        conn.execute(
            f"""
            INSERT INTO runs (id, workflow_id, status, event_id, event_name, event_data, event_ts,
                              result, error, created_at, updated_at, completed_at, wake_at,
                              wait_reason, version)
            SELECT 'run-' || lpad(i::text, 7, '0'),
                   (ARRAY['orders','invoices','emails'])[1 + i %% 3],
                   s.status,
                   'event-' || i, (ARRAY['orders','invoices','emails'])[1 + i %% 3] || '.created',
                   '{{"id": ' || i || '}}', 1.7e9 + i,
                   CASE WHEN s.status = 'completed' THEN '{{"ok": true}}' END,
                   CASE WHEN s.status = 'failed'
                        THEN '{{"type": "ValueError", "message": "bad input", "traceback": ""}}' END,
                   1.7e9 + i, 1.7e9 + i + 2,
                   CASE WHEN s.status IN ('completed','failed','cancelled') THEN 1.7e9 + i + 2 END,
                   CASE WHEN s.status = 'waiting' THEN 1.7e9 + i + 3600 END,
                   CASE WHEN s.status = 'waiting' THEN 'event payment.received' END,
                   'v1'
            FROM generate_series(1, %(runs)s) AS i,
                 LATERAL (SELECT ({statuses})[1 + i %% 10] AS status) AS s
            """,
            {"runs": runs},
        )
        conn.execute(
            """
            INSERT INTO steps (run_id, step_key, kind, status, output, error, attempts,
                               started_at, completed_at)
            SELECT 'run-' || lpad(i::text, 7, '0'), 'step-' || k, 'run', 'completed',
                   '{"n": ' || k || '}', NULL, 1, 1.7e9 + i + k * 0.1, 1.7e9 + i + k * 0.1 + 0.05
            FROM generate_series(1, %(runs)s) AS i, generate_series(1, %(steps)s) AS k
            """,
            {"runs": runs, "steps": steps},
        )
        conn.execute("ANALYZE runs")
        conn.execute("ANALYZE steps")
        took = time.perf_counter() - started
        print(f"filled {runs:,} runs and {runs * steps:,} steps in {took:.0f} s")


async def measure(app: df.Dataflows, runs: int, repeat: int) -> list[tuple[str, float, float]]:
    api = create_api(app, api_keys=(), environ={}, dashboard=True)
    await app.open()
    transport = httpx.ASGITransport(app=api)
    middle = f"run-{runs // 2:07d}"
    paths = {
        "runs list": "/",
        "runs list, status=failed": "/?status=failed",
        "runs list, workflow=orders": "/?workflow=orders",
        "runs list, an older page": f"/?after_run={1.7e9 + runs // 2!r}~{middle}",
        "run page (10 steps)": f"/runs/{middle}",
        "workflows page": "/workflows",
        "events page": "/events",
    }
    results = []
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        for label, path in paths.items():
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                answer = await client.get(path, headers=HTML)
                times.append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
            times.sort()
            p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
            results.append((label, statistics.median(times), p95))
    await app.close()
    return results


async def _create_schema(url: str) -> None:
    app = build_app(url)
    await app.open()  # migrates
    await app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    asyncio.run(_create_schema(args.database_url))
    fill(args.database_url, args.runs, args.steps)
    results = asyncio.run(measure(build_app(args.database_url), args.runs, args.repeat))
    print(f"\n{'page':<30} {'median ms':>10} {'p95 ms':>8}")
    for label, median, p95 in results:
        print(f"{label:<30} {median:>10.1f} {p95:>8.1f}")


if __name__ == "__main__":
    main()
