"""Restate under each measure: the Python SDK (``restate-sdk``) served by Hypercorn in a process of
its own (bench.apps.restate_app), registered with a single-node ``restate-server``
(bench.servers.RestateServer) started for the measure and stopped after it.

Invocations go through the server's HTTP ingress, as a client would call them. A step is
``ctx.run``; the event is a workflow's durable promise resolved by its shared ``release``
handler; the sleep is ``ctx.sleep``. Server and SDK run with their defaults, except in the memory
measure (see ``memory``) and the mixed and two_workers measures, where the server's invoker
concurrency limit stands for a worker's concurrency (see ``invoker_limit``). The harness's ``url`` (PostgreSQL) is not used: Restate keeps its state
in its own server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from bench.callers import callers_do
from bench.cpu import server_cpu_between, server_cpu_ticks
from bench.procs import RssSampler, rss_mb, start_process, stop_process
from bench.servers import RestateServer, ServerStartError, free_port, process_cpu_seconds, wait_port

TIMEOUT = httpx.Timeout(600.0)


@dataclass
class Restate:
    server: RestateServer
    service_pid: int
    http: httpx.AsyncClient

    async def call(self, path: str, body: Any = None) -> Any:
        r = await self.http.post(self.server.ingress + path, json=body)
        r.raise_for_status()
        return r.json() if r.content else None

    async def send(self, path: str, body: Any = None) -> None:
        r = await self.http.post(self.server.ingress + path + "/send", json=body)
        r.raise_for_status()

    async def attach(self, key: str) -> Any:
        r = await self.http.get(f"{self.server.ingress}/restate/workflow/Waiter/{key}/attach")
        r.raise_for_status()
        return r.json()

    async def count(self, status: str) -> int:
        """Invocations of the Waiter workflows' ``run`` in ``status``, by the admin SQL API."""
        sql = (
            f"SELECT count(*) AS n FROM sys_invocation WHERE status = '{status}' "
            "AND target_service_name = 'Waiter' AND target_handler_name = 'run'"
        )
        r = await self.http.post(
            self.server.admin + "/query",
            json={"query": sql},
            headers={"accept": "application/json"},
        )
        r.raise_for_status()
        return int(r.json()["rows"][0]["n"])


@contextlib.asynccontextmanager
async def restate(
    connections: int = 100, server_env: dict[str, str] | None = None
) -> AsyncIterator[Restate]:
    """A fresh server, the service process registered with it, and an HTTP client."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    with RestateServer(env=server_env) as server:
        port = free_port()
        service = start_process(["-m", "bench.apps.restate_app", str(port)])
        try:
            wait_port(port, service, "restate service (hypercorn)")
            async with httpx.AsyncClient(timeout=TIMEOUT, limits=limits) as http:
                r = await http.post(
                    server.admin + "/deployments", json={"uri": f"http://127.0.0.1:{port}"}
                )
                if r.status_code >= 300:
                    raise ServerStartError("restate", f"registration: {r.status_code} {r.text}")
                yield Restate(server, service.pid, http)
        finally:
            stop_process(service, grace=5)


async def wait_for(check: Any, target: int, timeout: float, every: float) -> None:
    deadline = time.monotonic() + timeout
    while await check() < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{target} not reached within {timeout}s")
        await asyncio.sleep(every)


# -- the measures -------------------------------------------------------------------------------


def sequential(url: str, steps: int) -> dict[str, Any]:
    """One invocation of ``steps`` ``ctx.run`` calls; the client CPU is the service process's."""

    async def main() -> dict[str, Any]:
        async with restate() as r:
            await r.call("/Bench/steps", 1)  # warm-up
            server0, service0 = server_cpu_ticks(r.server.comm), process_cpu_seconds(r.service_pid)
            start = time.perf_counter()
            await r.call("/Bench/steps", steps)
            seconds = time.perf_counter() - start
            server1, service1 = server_cpu_ticks(r.server.comm), process_cpu_seconds(r.service_pid)
            figures = {"seconds": seconds, "client_cpu_seconds": service1 - service0}
            if server0 and server1:
                figures["server_cpu_seconds"] = server_cpu_between(server0, server1)
            return figures

    return {"steps": steps, **asyncio.run(main())}


def throughput(url: str, runs: int, steps: int, concurrency: int) -> dict[str, Any]:
    """``concurrency`` invocations in flight at once (Restate has no worker-side limit to set:
    the server pushes every invocation to the service), until ``runs`` have completed."""

    async def main() -> float:
        async with restate(connections=concurrency) as r:
            todo = iter(range(runs))
            ingress = Ingress(r.server.ingress_port, concurrency)  # httpx's pool was the limit

            async def caller() -> None:
                for _ in todo:
                    await ingress.post("/Bench/steps", steps)

            try:
                start = time.perf_counter()
                await asyncio.gather(*(caller() for _ in range(concurrency)))
                return time.perf_counter() - start
            finally:
                ingress.close()

    seconds = asyncio.run(main())
    return {"runs": runs, "steps_per_run": steps, "concurrency": concurrency, "seconds": seconds}


def event(url: str, trials: int, gap: float) -> dict[str, Any]:
    """Workflows wait on a durable promise; each is released in turn and timed until its code
    went on (the workflow returns its time.perf_counter(), the same clock on this machine)."""
    return {"latencies": asyncio.run(_released(trials, gap, time.perf_counter, "perf_counter"))}


async def _released(
    trials: int, gap: float, clock: Callable[[], float], returned: str
) -> list[float]:
    """``trials`` Waiter workflows at their promise, released one at a time: from just before
    the ingress call of ``release`` (``clock()``) to the workflow's own reading of the same clock
    after the promise (its result's ``returned`` key), with a random pause between trials."""
    async with restate() as r:
        for i in range(trials):
            await r.send(f"/Waiter/e{i}/run")
        await wait_for(lambda: r.count("running"), trials, 600, 0.1)
        await asyncio.sleep(1.0)  # each has reached its promise
        latencies = []
        for i in range(trials):
            sent = clock()
            await r.call(f"/Waiter/e{i}/release")
            latencies.append((await r.attach(f"e{i}"))[returned] - sent)
            await asyncio.sleep(random.uniform(0, 2 * gap))  # random phase against polling
        return latencies


def sleep(url: str, trials: int, gap: float) -> dict[str, Any]:
    async def main() -> list[dict[str, float]]:
        async with restate() as r:
            calls = []
            for i in range(trials):
                calls.append(asyncio.create_task(r.call("/Bench/nap", i)))
                await asyncio.sleep(gap)
            return list(await asyncio.gather(*calls))

    return {"lateness": [o["woke"] - o["intended"] for o in asyncio.run(main())]}


#: The memory measure's server setting: an invocation blocked on its promise is suspended (its
#: HTTP/2 stream to the service closed, its state left in the server) after 1 s of inactivity
#: instead of the default 1 min, so all ``count`` get suspended (the server keeps at most 1000
#: invocations open at the service at a time by default).
MEMORY_SERVER_ENV = {"RESTATE_WORKER__INVOKER__INACTIVITY_TIMEOUT": "1s"}


def memory(url: str, count: int) -> dict[str, Any]:
    """``count`` workflows suspended on their promise; the service process's RSS (and the
    server's); then all are released."""

    async def main() -> dict[str, Any]:
        async with restate(connections=32, server_env=MEMORY_SERVER_ENV) as r:
            sampler = RssSampler(r.service_pid)
            try:
                figures: dict[str, Any] = {"rss_idle_mb": sampler.now()}
                start = time.perf_counter()
                sem = asyncio.Semaphore(32)

                async def limited(coro: Any) -> Any:
                    async with sem:
                        return await coro

                await asyncio.gather(*(limited(r.send(f"/Waiter/h{i}/run")) for i in range(count)))
                await wait_for(lambda: r.count("suspended"), count, 3600, 0.5)
                figures["suspend_s"] = time.perf_counter() - start
                await asyncio.sleep(3)
                figures["rss_suspended_mb"] = sampler.now()
                figures["server_rss_suspended_mb"] = rss_mb(r.server.pid)
                start = time.perf_counter()
                await asyncio.gather(
                    *(limited(r.call(f"/Waiter/h{i}/release")) for i in range(count))
                )
                with contextlib.suppress(TimeoutError):  # counted below
                    await wait_for(lambda: r.count("completed"), count, 3600, 0.5)
                figures["resume_s"] = time.perf_counter() - start
                figures["resumed"] = await r.count("completed")
                figures["rss_after_mb"] = sampler.now()
                figures["rss_peak_mb"] = sampler.peak
                return figures
            finally:
                sampler.stop()

    figures = asyncio.run(main())
    return {"count": count, "all_resumed": figures["resumed"] == count, **figures}


#: Service processes in the failover measure (as for dataflows' workers).
FAILOVER_WORKERS = 3


class Balancer:
    """A TCP load balancer in front of the service processes, as a deployment of several
    replicas would have: each new connection goes to the next live backend, round robin."""

    def __init__(self) -> None:
        self.backends: list[int] = []
        self.turn = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = None
        for _ in range(len(self.backends)):
            self.turn += 1
            port = self.backends[self.turn % len(self.backends)]
            with contextlib.suppress(OSError):
                upstream = await asyncio.open_connection("127.0.0.1", port)
                break
        if upstream is None:
            writer.close()
            return
        up_reader, up_writer = upstream

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            # (cancelled when the measure ends with connections still open)
            with contextlib.suppress(OSError, ConnectionError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        with contextlib.suppress(asyncio.CancelledError):  # at the end of the measure
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def close(self) -> None:
        self.server.close()


def failover(url: str, kills: int) -> dict[str, Any]:
    """Three service processes behind a TCP load balancer, registered as one deployment;
    ``kills`` times: invoke ``hold``, SIGKILL the process whose ``ctx.run`` holds it, and time
    from the kill to the moment the ``ctx.run`` began again in another process (the server
    retries the invocation with its default retry policy, first after 500 ms); then start a
    process in place of the dead one."""
    import os
    import signal
    import tempfile
    from pathlib import Path

    async def main() -> list[float]:
        markers = Path(tempfile.mkdtemp(prefix="bench_failover_"))
        balancer = Balancer()
        front = await balancer.start()
        procs: dict[int, Any] = {}

        def spawn() -> None:
            port = free_port()
            proc = start_process(["-m", "bench.apps.restate_app", str(port)])
            wait_port(port, proc, "restate service (hypercorn)")
            procs[proc.pid] = (proc, port)
            balancer.backends.append(port)

        try:
            with RestateServer() as server:
                for _ in range(FAILOVER_WORKERS):
                    spawn()
                async with httpx.AsyncClient(timeout=TIMEOUT) as http:
                    r = await http.post(
                        server.admin + "/deployments", json={"uri": f"http://127.0.0.1:{front}"}
                    )
                    if r.status_code >= 300:
                        raise ServerStartError("restate", f"registration: {r.status_code} {r.text}")
                    taken_over = []
                    for k in range(kills):
                        marker = markers / f"held-{k}"
                        r = await http.post(server.ingress + "/Bench/hold/send", json=str(marker))
                        r.raise_for_status()
                        invocation = r.json()["invocationId"]
                        deadline = time.monotonic() + 120
                        while not (marker.exists() and marker.read_text()):
                            if time.monotonic() > deadline:
                                raise TimeoutError("no service process took the invocation")
                            await asyncio.sleep(0.005)
                        holder = int(marker.read_text())
                        killed_at = time.time()
                        os.kill(holder, signal.SIGKILL)
                        r = await http.get(
                            f"{server.ingress}/restate/invocation/{invocation}/attach"
                        )
                        r.raise_for_status()
                        taken_over.append(r.json()["resumed_at"] - killed_at)
                        proc, port = procs.pop(holder)
                        proc.wait()
                        balancer.backends.remove(port)
                        spawn()
                    return taken_over
        finally:
            balancer.close()
            for proc, _ in procs.values():
                stop_process(proc, grace=5)

    return {"seconds": asyncio.run(main())}


# -- starts, mixed, event_remote, two_workers ---------------------------------------------------


def invoker_limit(concurrency: int) -> dict[str, str]:
    """The server setting that bounds how many invocations it runs at the service at once (its
    default is 1,000): the counterpart of a worker's concurrency, since a Restate service takes
    every invocation the server pushes to it."""
    return {"RESTATE_WORKER__INVOKER__CONCURRENT_INVOCATIONS_LIMIT": str(concurrency)}


class Ingress:
    """A pool of ``size`` keep-alive HTTP/1.1 connections to the ingress, for the starts and
    mixed measures' sends. httpx's pool (used for everything else here) was the bottleneck with
    many concurrent callers: 70-160 sends/s from 64 callers against about 2,000/s through plain
    keep-alive connections on the same server, so these sends go through this minimal client."""

    def __init__(self, port: int, size: int) -> None:
        self.port = port
        self.size = size
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self.opened: list[asyncio.StreamWriter] = []

    async def post(self, path: str, body: Any) -> bytes:
        if self.idle.empty() and len(self.opened) < self.size:
            conn = await asyncio.open_connection("127.0.0.1", self.port)
            self.opened.append(conn[1])
        else:
            conn = await self.idle.get()
        reader, writer = conn
        data = json.dumps(body).encode()
        writer.write(
            f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            f"content-length: {len(data)}\r\n\r\n".encode()
            + data
        )
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"transfer-encoding":
                raise RuntimeError("chunked ingress responses are not handled here")
        answer = await reader.readexactly(length)
        self.idle.put_nowait(conn)
        if not head.startswith(b"HTTP/1.1 2"):
            raise RuntimeError(f"ingress: {head.splitlines()[0]!r} {answer[:200]!r}")
        return answer

    async def send(self, path: str, body: Any) -> None:
        await self.post(path + "/send", body)

    def close(self) -> None:
        for writer in self.opened:
            writer.close()


async def query(r: Restate, sql: str) -> list[dict[str, Any]]:
    """Rows of the admin SQL API."""
    resp = await r.http.post(
        r.server.admin + "/query", json={"query": sql}, headers={"accept": "application/json"}
    )
    resp.raise_for_status()
    rows: list[dict[str, Any]] = resp.json()["rows"]
    return rows


STEPS_RUNS = "target_service_name = 'Bench' AND target_handler_name = 'steps'"


async def steps_done_at(r: Restate, runs: int, timeout: float = 3600) -> float:
    """Waits until ``runs`` invocations of Bench/steps completed; returns when the last did
    (the server's completed_at, a wall-clock time on this machine, as time.time())."""
    from datetime import datetime

    deadline = time.monotonic() + timeout
    while True:
        rows = await query(
            r,
            f"SELECT count(*) AS n, max(completed_at) AS last FROM sys_invocation "
            f"WHERE {STEPS_RUNS} AND status = 'completed'",
        )
        if rows[0]["n"] >= runs:
            return datetime.fromisoformat(rows[0]["last"].replace("Z", "+00:00")).timestamp()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{runs} runs not completed within {timeout}s")
        await asyncio.sleep(0.2)


async def queue_steps(r: Restate, runs: int, steps: int, callers: int) -> float:
    """Sends ``runs`` invocations of Bench/steps (``/send?delay=``), all due at one moment a
    few seconds ahead, so every one is durably queued in the server (status "scheduled") before
    any runs; sleeps until that moment and returns it (time.time())."""
    due = time.time() + 3.0 + runs * 0.003

    ingress = Ingress(r.server.ingress_port, callers)

    async def send(i: int) -> None:
        delay_ms = int((due - time.time()) * 1000)
        if delay_ms <= 50:
            raise RuntimeError("runs not all queued before they were due: raise the margin")
        await ingress.post(f"/Bench/steps/send?delay={delay_ms}ms", steps)

    try:
        await callers_do(runs, callers, send)
    finally:
        ingress.close()
    await asyncio.sleep(due - time.time())
    return due


#: Concurrent callers that queue the runs of the drain and two_workers measures (not timed).
STARTERS = 64


def starts(url: str, starts: int, callers: int) -> dict[str, Any]:
    """``starts`` ingress ``/send`` invocations of a handler without steps (Bench/trivial) from
    ``callers`` concurrent callers on one pooled httpx client (``callers`` connections); a send
    returns once the server accepted the invocation. The server runs each at the service as it
    comes in (it pushes invocations to the deployment: there is no worker to leave out)."""

    async def main() -> tuple[float, list[float]]:
        async with restate() as r:
            ingress = Ingress(r.server.ingress_port, callers)
            try:
                seconds, latencies, _ = await callers_do(
                    starts, callers, lambda i: ingress.send("/Bench/trivial", i)
                )
            finally:
                ingress.close()
            return seconds, latencies

    seconds, latencies = asyncio.run(main())
    return {"starts": starts, "callers": callers, "seconds": seconds, "latencies": latencies}


def mixed(url: str, runs: int, steps: int, concurrency: int, callers: int) -> dict[str, Any]:
    """Each half on a fresh server whose invoker runs at most ``concurrency`` invocations at the
    service at once (``invoker_limit``). Drain: the runs are sent first, all delayed to one due
    time (``queue_steps``), timed from that moment to the last completed_at. Mixed: ``callers``
    concurrent callers send the runs (``/send``) while the service executes them, timed from the
    first send to the last completed_at. The service is always a process of its own (Hypercorn),
    as Restate deploys it: the process that starts runs is never the one that executes them."""

    async def drain() -> float:
        async with restate(server_env=invoker_limit(concurrency)) as r:
            due = await queue_steps(r, runs, steps, STARTERS)
            return await steps_done_at(r, runs) - due

    async def mix() -> tuple[float, list[float]]:
        async with restate(server_env=invoker_limit(concurrency)) as r:
            ingress = Ingress(r.server.ingress_port, callers)
            try:
                start = time.time()
                _, latencies, _ = await callers_do(
                    runs, callers, lambda i: ingress.send("/Bench/steps", steps)
                )
            finally:
                ingress.close()
            return await steps_done_at(r, runs) - start, latencies

    drain_seconds = asyncio.run(drain())
    mixed_seconds, latencies = asyncio.run(mix())
    return {
        "runs": runs,
        "steps_per_run": steps,
        "concurrency": concurrency,
        "callers": callers,
        "drain_seconds": drain_seconds,
        "mixed_seconds": mixed_seconds,
        "start_latencies": latencies,
    }


def event_remote(url: str, trials: int, gap: float) -> dict[str, Any]:
    """As ``event`` (whose service already runs in a process of its own), timed across the
    processes with time.time(): from just before the ingress call of ``release`` to the
    time.time() the workflow returns when its code went on after the promise."""
    return {"latencies": asyncio.run(_released(trials, gap, time.time, "time"))}


def two_workers(url: str, runs: int, steps: int, concurrency: int) -> dict[str, Any]:
    """The drain of ``mixed`` by one, then (on a fresh server) two service processes, registered
    as one deployment behind the TCP round-robin ``Balancer`` (a deployment is one URL; the
    balancer is in front in both halves), the server's invoker limited to ``concurrency`` per
    process. The processes are up and registered before the runs are sent (delayed to one due
    time); timed from that moment to the last completed_at. The balancer is a Python asyncio
    proxy in this process, so it takes CPU from the same two cores: ``one_direct_seconds`` is a
    third drain by one process registered without it, for scale."""
    from bench.servers import process_cpu_seconds

    async def half(processes: int, balanced: bool = True) -> tuple[float, list[float]]:
        balancer = Balancer()
        front = await balancer.start()
        procs = []
        limits = httpx.Limits(max_connections=STARTERS, max_keepalive_connections=STARTERS)
        try:
            with RestateServer(env=invoker_limit(concurrency * processes)) as server:
                for _ in range(processes):
                    port = free_port()
                    proc = start_process(["-m", "bench.apps.restate_app", str(port)])
                    procs.append(proc)
                    wait_port(port, proc, "restate service (hypercorn)")
                    balancer.backends.append(port)
                async with httpx.AsyncClient(timeout=TIMEOUT, limits=limits) as http:
                    uri = f"http://127.0.0.1:{front if balanced else balancer.backends[0]}"
                    resp = await http.post(server.admin + "/deployments", json={"uri": uri})
                    if resp.status_code >= 300:
                        raise ServerStartError(
                            "restate", f"registration: {resp.status_code} {resp.text}"
                        )
                    r = Restate(server, procs[0].pid, http)
                    cpu = [process_cpu_seconds(p.pid) for p in procs]
                    due = await queue_steps(r, runs, steps, STARTERS)
                    seconds = await steps_done_at(r, runs) - due
                    return seconds, [
                        process_cpu_seconds(p.pid) - c for p, c in zip(procs, cpu, strict=True)
                    ]
        finally:
            balancer.close()
            for proc in procs:
                stop_process(proc, grace=5)

    one, one_cpu = asyncio.run(half(1))
    two, two_cpu = asyncio.run(half(2))
    direct, _ = asyncio.run(half(1, balanced=False))
    return {
        "runs": runs,
        "steps_per_run": steps,
        "concurrency": concurrency,
        "one_seconds": one,
        "two_seconds": two,
        "one_service_cpu_seconds": one_cpu,
        "two_service_cpu_seconds": two_cpu,
        "one_direct_seconds": direct,
    }
