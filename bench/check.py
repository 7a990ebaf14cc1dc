"""How long `dataflows check` takes over many unfinished runs (PostgreSQL).

    .venv/bin/python bench/check.py [--runs 100000] [--database-url URL] [--schema S] [--keep]

Creates the schema (dropped first), writes RUNS waiting runs of the workflow below straight into
its tables (each with three recorded steps and a pending event wait, as a run waiting for its
shipment has), then times `dataflows check bench/check.py:app --json` in a new process, as a
deploy pipeline runs it, and prints the figure. `--keep` leaves the schema in place.
This file is also the app the check loads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dataflows as df

app = df.Dataflows()


@app.workflow("bench-order")
async def order(event: df.Event, step: df.Step) -> Any:
    item = await step.run("fetch", lambda: {"sku": event.data["sku"]})
    price = await step.run("price", lambda: 42)
    await step.run("charge", lambda: {"charged": price, "sku": item["sku"]})
    shipped = await step.wait_for_event("shipped", "bench/shipped", timeout=None)
    return shipped is not None


SEED = """
INSERT INTO runs (id, workflow_id, status, event_id, event_name, event_data, event_ts,
                  created_at, updated_at, wait_reason, version)
SELECT 'r' || lpad(n::text, 8, '0'), 'bench-order', 'waiting', 'e' || n, 'dataflows/start',
       '{"sku": "s' || n || '"}', %(now)s, %(now)s, %(now)s, 'event bench/shipped (shipped)',
       'bench'
FROM generate_series(1, %(runs)s) AS n;
INSERT INTO steps (run_id, step_key, kind, status, output, error, attempts, event_id,
                   started_at, completed_at)
SELECT 'r' || lpad(n::text, 8, '0'), s.key, 'run', 'completed', s.output, NULL, 1, NULL,
       %(now)s + s.i, %(now)s + s.i
FROM generate_series(1, %(runs)s) AS n,
     (VALUES (1, 'fetch', '{"sku": "s"}'), (2, 'price', '42'),
             (3, 'charge', '{"charged": 42, "sku": "s"}')) AS s(i, key, output);
INSERT INTO waits (run_id, step_key, kind, wake_at, event_name, filter_paths, filter_key,
                   created_at)
SELECT 'r' || lpad(n::text, 8, '0'), 'shipped', 'wait', NULL, 'bench/shipped', '[]', '[]',
       %(now)s + 4
FROM generate_series(1, %(runs)s) AS n;
ANALYZE runs;
ANALYZE steps;
ANALYZE waits
"""


async def seed(url: str, schema: str, runs: int) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    async with df.Dataflows(url, schema=schema) as created:  # migrated
        await created.list_runs(limit=1)
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await conn.execute(f'SET search_path TO "{schema}"')
        params = {"runs": runs, "now": time.time()}
        for statement in filter(str.strip, SEED.split(";")):
            await conn.execute(statement, params)
        await conn.commit()


async def drop(url: str, schema: str) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATAFLOWS_BENCH_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--schema", default="bench_check")
    parser.add_argument("--keep", action="store_true", help="Leave the schema in place.")
    args = parser.parse_args()

    started = time.monotonic()
    asyncio.run(seed(args.database_url, args.schema, args.runs))
    print(f"seeded {args.runs:,} waiting runs in {time.monotonic() - started:.1f}s", flush=True)

    here = Path(__file__).resolve()
    command = [
        sys.executable,
        "-m",
        "dataflows.cli",
        "check",
        f"{here}:app",
        "--json",
        "--database-url",
        args.database_url,
        "--schema",
        args.schema,
    ]
    started = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    took = time.monotonic() - started
    if proc.returncode not in (0, 1):
        sys.exit(f"dataflows check failed ({proc.returncode}): {proc.stderr}")
    report = json.loads(proc.stdout)
    [workflow] = report["workflows"]
    print(
        f"dataflows check: {report['checked']:,} runs ({workflow['compatible']:,} compatible, "
        f"{len(workflow['diverging']):,} diverging) in {took:.1f}s wall "
        f"({report['seconds']:.1f}s in the check; {report['checked'] / took:,.0f} runs/s)"
    )
    if not args.keep:
        asyncio.run(drop(args.database_url, args.schema))
    if report["checked"] != args.runs or not report["compatible"]:
        sys.exit("unexpected report: every seeded run should be checked and compatible")


if __name__ == "__main__":
    main()
