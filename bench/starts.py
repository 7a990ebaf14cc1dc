"""Starting runs: ``app.start`` by many concurrent callers on PostgreSQL (starts/s, p50/p99).

    PYTHONPATH=src python bench/starts.py [--starts 10000] [--callers 64] [--bare]

Each measure uses a fresh schema in ``--pg-url``'s database, dropped afterwards. ``--bare``
also times a bare one-row ``INSERT`` per call (autocommit, same pool size and callers) for
comparison. Run it against another tree's ``src`` to compare code versions.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import psycopg
from psycopg_pool import AsyncConnectionPool

import dataflows as df


async def _callers(n: int, callers: int, call: object) -> tuple[float, list[float]]:
    latencies: list[float] = []
    left = iter(range(n))

    async def caller() -> None:
        for i in left:
            t0 = time.perf_counter()
            await call(i)  # type: ignore[operator]
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return time.perf_counter() - t0, latencies


def _line(name: str, n: int, elapsed: float, latencies: list[float]) -> None:
    q = statistics.quantiles(latencies, n=100)
    print(
        f"{name}: {n / elapsed:,.0f}/s  p50 {q[49] * 1000:.2f} ms  p99 {q[98] * 1000:.2f} ms",
        flush=True,
    )


async def starts(url: str, n: int, callers: int) -> None:
    schema = f"bench_starts_{uuid.uuid4().hex[:8]}"
    app = df.Dataflows(url, schema=schema)

    @app.workflow("noop")
    async def noop(event: df.Event, step: df.Step) -> None:
        return None

    try:
        await app.open()
        await app.start("noop", {"n": -1})  # warm up the pool
        elapsed, latencies = await _callers(n, callers, lambda i: app.start("noop", {"n": i}))
        _line("app.start", n, elapsed, latencies)
        batches = getattr(app.store, "start_batches", None)  # absent before group commit
        if batches:
            print(f"  {batches - 1:,} transactions ({n / (batches - 1):.1f} starts each)")
    finally:
        await app.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


async def bare(url: str, n: int, callers: int) -> None:
    table = f"bench_bare_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id text PRIMARY KEY, data jsonb, ts float8)")
    try:
        async with AsyncConnectionPool(url, min_size=10, max_size=10, open=False) as pool:

            async def insert(i: int) -> None:
                async with pool.connection() as conn:
                    await conn.execute(
                        f"INSERT INTO {table} VALUES (%s, %s, %s)",
                        (uuid.uuid4().hex, f'{{"n": {i}}}', time.time()),
                    )

            elapsed, latencies = await _callers(n, callers, insert)
            _line("bare INSERT", n, elapsed, latencies)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--starts", type=int, default=10_000)
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--bare", action="store_true")
    args = parser.parse_args()
    print(f"dataflows from {df.__file__}", flush=True)
    asyncio.run(starts(args.pg_url, args.starts, args.callers))
    if args.bare:
        asyncio.run(bare(args.pg_url, args.starts, args.callers))


if __name__ == "__main__":
    main()
