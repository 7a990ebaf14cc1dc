"""The Restate services of the benchmark, served as an ASGI app by Hypercorn.

``python -m bench.apps.restate_app PORT`` serves them on 127.0.0.1:PORT (HTTP/2 cleartext, which
Restate uses by default for its bidirectional protocol) until killed. A step is ``ctx.run``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import timedelta
from typing import Any

import restate
from restate import Context, RunOptions, WorkflowContext, WorkflowSharedContext

bench = restate.Service("Bench")
waiter = restate.Workflow("Waiter")


async def noop(i: int) -> int:
    return i


def in_one_second() -> float:
    return time.time() + 1.0


@bench.handler()
async def steps(ctx: Context, n: int) -> int:
    for i in range(n):
        await ctx.run_typed("step", noop, RunOptions(), i)
    return n


@bench.handler()
async def trivial(ctx: Context, i: int) -> int:
    """The starts measure's invocation: no step."""
    return i


@bench.handler()
async def nap(ctx: Context, i: int) -> dict[str, Any]:
    intended = await ctx.run_typed("intended", in_one_second, RunOptions())
    await ctx.sleep(timedelta(seconds=1))
    return {"intended": intended, "woke": time.time()}


async def held(marker: str) -> dict[str, float]:
    """The failover measure's step: its first execution writes ``marker`` (this pid) and waits
    until its process is killed; a later one (in another process) returns the time it began."""
    began = time.time()
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return {"resumed_at": began, "pid": os.getpid()}
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    await asyncio.sleep(300)  # until killed
    return {"resumed_at": 0.0, "pid": os.getpid()}


@bench.handler()
async def hold(ctx: Context, marker: str) -> dict[str, float]:
    return await ctx.run_typed("hold", held, RunOptions(), marker)


@waiter.main()
async def run(ctx: WorkflowContext) -> dict[str, float]:
    """Waits for the durable promise ``go``; returns when it went on (time.perf_counter() and
    time.time())."""
    await ctx.promise("go").value()
    return {"perf_counter": time.perf_counter(), "time": time.time()}


@waiter.handler()
async def release(ctx: WorkflowSharedContext) -> None:
    await ctx.promise("go").resolve(True)


app = restate.app(services=[bench, waiter])


def main(port: int) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    # As Restate's Python template configures Hypercorn: no cap on streams or keep-alive.
    config.h2_max_concurrent_streams = 2**31 - 1
    config.keep_alive_max_requests = 2**31 - 1
    config.keep_alive_timeout = 2**31 - 1
    config.accesslog = None
    asyncio.run(serve(app, config))  # type: ignore[arg-type]


if __name__ == "__main__":
    main(int(sys.argv[1]))
