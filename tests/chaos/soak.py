"""A chaos soak: ``dataflows serve`` and three ``dataflows worker`` processes on a private
PostgreSQL under steady webhook load, with faults injected at seeded random moments; then the
invariants are checked from the database and the effects log, and a table of figures is printed.

Run it with ``scripts/chaos --minutes 10`` (or ``python -m tests.chaos.soak``);
``tests/chaos/test_soak.py`` runs a 60-second soak in the default test run. What is injected,
what is checked and how each figure is measured is written down in ``docs/reliability.md``.

Topology: the soak starts a :class:`PrivatePostgres` (never the shared server) and a
:class:`TcpProxy` in front of it; ``serve`` and the workers connect through the proxy (each with
its own ``application_name``), the soak's own queries go straight to the server. The load is a
provider's: each order is one signed ``generic/order.created`` webhook, and once it is
acknowledged, one ``generic/order.paid`` webhook with the same key. A delivery that is not
acknowledged with a 2xx (a 503, a refused connection, a timeout) is delivered again with the
same delivery id until it is, as providers do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.chaos import flows
from tests.faults.private_pg import PrivatePostgres
from tests.faults.proxy import TcpProxy

ROOT = Path(__file__).resolve().parents[2]
APP = "tests/chaos/flows.py"
SECRET = "chaos-secret"
SCHEMA = "dataflows"
#: The fault kinds, each injected in turn (in a seeded random order per round).
KINDS = ("worker_kill", "worker_freeze", "pg_restart", "pg_freeze", "proxy_drop", "serve_kill")
#: Written by a worker whose late write was refused by the lease fence.
FENCED = ("lease lost or run cancelled; dropping it", "its outcome was not recorded")
#: How far after a fault (seconds, beyond the lease) a step's uncommitted effect may be blamed
#: on it: the time a loaded machine may take between an effect and the commit of its step.
SLACK = 2.0
#: The slack on top of the lease allowed for the failover p99 by ``--assert-failover``: a
#: database fault that follows a kill delays the takeover by its own length.
FAILOVER_SLACK = 5.0


@dataclass
class Options:
    seconds: float = 60.0
    seed: int = 0
    #: Orders per second (each order is two webhooks).
    rate: float = 10.0
    workers: int = 3
    concurrency: int = 16
    #: The workers' lease: a frozen worker is stopped for ``lease + 2`` seconds.
    lease: float = 5.0
    #: Seconds between two faults: uniform in this range.
    gap: tuple[float, float] = (3.0, 6.0)
    drain_timeout: float = 60.0
    scratch: Path | None = None
    json_path: Path | None = None
    echo: bool = True


@dataclass
class Fault:
    kind: str
    start: float  # wall clock (time.time())
    end: float
    pid: int | None = None
    detail: str = ""
    #: Runs the worker held (lease and status running) when it was killed or frozen.
    held: list[str] = field(default_factory=list)


@dataclass
class Delivery:
    kind: str  # "created" or "paid"
    key: str
    body: bytes
    headers: dict[str, str]
    first_sent: float = 0.0
    attempts: int = 0
    accepted_at: float | None = None
    event_id: str | None = None
    run_ids: list[str] = field(default_factory=list)


class Proc:
    """One ``dataflows`` command as a process of its own; output appended to a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log = logs / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.frozen = False
        self.restart_at: float | None = None  # monotonic; None: start it when it is found dead
        self.starts = 0
        self.unexpected_exits: list[int] = []

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> None:
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"--- start {self.starts} at {time.time():.3f}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "dataflows.cli", *self.args],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL (a stopped process dies too) and reap."""
        if self.popen is None:
            return
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(10)
        self.frozen = False

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within 10 s."""
        if self.popen is None:
            return
        if self.alive():
            os.kill(self.pid, signal.SIGCONT)
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.popen.wait(10)


def sign(kind: str, key: str, n: int) -> Delivery:
    # The event's kind is in the body too, as providers put it: the signature covers the body
    # alone, so two deliveries with one body are one event (replay protection), whatever their
    # unsigned event-type headers say.
    body = json.dumps({"key": key, "n": n, "type": f"order.{kind}"}).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-Signature": signature,
        "X-Event-Type": f"order.{kind}",
        "X-Webhook-Id": f"{key}-{kind}",
    }
    return Delivery(kind, key, body, headers)


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Load:
    """The provider: orders at a steady rate, each delivery sent again until it gets a 2xx."""

    def __init__(self, url: str, rate: float, seed: int) -> None:
        self.url = url
        self.rate = rate
        self.rng = random.Random(seed)
        self.deliveries: list[Delivery] = []
        self.statuses: Counter[str] = Counter()
        self.latency_2xx: list[float] = []
        self.latency_503: list[float] = []
        self.producing = True
        self.closed = False
        self._waiters: list[asyncio.Future[Delivery]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(10.0, connect=2.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )

    def next_acknowledged(self) -> asyncio.Future[Delivery]:
        """Resolved by the next 2xx, in the loop turn that reads it."""
        future: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        return future

    def pending(self) -> int:
        return sum(1 for d in self.deliveries if d.accepted_at is None)

    async def produce(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        n = 0
        while self.producing:
            self._spawn(sign("created", f"o{n}", n))
            n += 1
            await asyncio.sleep(max(0.0, started + n / self.rate - loop.time()))

    def _spawn(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        task = asyncio.create_task(self._deliver(delivery))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, d: Delivery) -> None:
        d.first_sent = time.time()
        while not self.closed:
            d.attempts += 1
            started = time.monotonic()
            status = "error"
            retry_after = 0.5
            try:
                response = await self._client.post(self.url, content=d.body, headers=d.headers)
                status = str(response.status_code)
            except httpx.TimeoutException:
                status = "timeout"
            except httpx.HTTPError:
                status = "connection error"
            took = time.monotonic() - started
            self.statuses[status] += 1
            if status.startswith("2"):
                self.latency_2xx.append(took)
                answer = response.json()
                d.accepted_at = time.time()
                d.event_id = answer["event_id"]
                d.run_ids = list(answer["run_ids"])
                for waiter in self._waiters:
                    if not waiter.done():
                        waiter.set_result(d)
                self._waiters.clear()
                if d.kind == "created":
                    await asyncio.sleep(self.rng.uniform(0.1, 0.5))
                    self._spawn(sign("paid", d.key, int(d.key[1:])))
                return
            if status == "503":
                self.latency_503.append(took)
                with contextlib.suppress(ValueError):
                    retry_after = float(response.headers.get("retry-after", "1"))
            await asyncio.sleep(min(retry_after, 1.0) * self.rng.uniform(0.5, 1.0))

    async def close(self) -> None:
        self.producing = False
        self.closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._client.aclose()


class Soak:
    def __init__(self, options: Options, scratch: Path) -> None:
        self.o = options
        self.rng = random.Random(options.seed)
        self.scratch = scratch
        self.logs = scratch / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.effects = scratch / "effects.jsonl"
        self.faults: list[Fault] = []
        self.notes: list[str] = []
        self.pg: PrivatePostgres | None = None
        self.proxy: TcpProxy | None = None
        self.procs: list[Proc] = []
        self.serve: Proc | None = None
        self.workers: list[Proc] = []
        self.load: Load | None = None
        self.keeping = True
        self.chaos_seconds = 0.0
        self.drain_seconds = 0.0
        self._background: set[asyncio.Task[None]] = set()
        self._pg_lock = asyncio.Lock()

    def say(self, text: str) -> None:
        if self.o.echo:
            print(f"[chaos {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    # -- setting up -------------------------------------------------------------------------------

    def _env(self, url: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DATAFLOWS_")}
        env.update(
            DATAFLOWS_DATABASE_URL=url,
            DATAFLOWS_GENERIC_SECRET=SECRET,
            DATAFLOWS_API_KEYS="chaos-api-key",
            CHAOS_EFFECTS=str(self.effects),
            PYTHONUNBUFFERED="1",
        )
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        return env

    async def setup(self) -> str:
        self.pg = await asyncio.to_thread(PrivatePostgres)
        self.proxy = TcpProxy(self.pg.url).start()
        migrate = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "dataflows.cli", "migrate", APP],
            cwd=ROOT,
            env=self._env(self.pg.url),
            capture_output=True,
            timeout=60,
        )
        if migrate.returncode != 0:
            raise RuntimeError(
                f"migrate failed:\n{migrate.stdout.decode()}{migrate.stderr.decode()}"
            )
        port = free_port()
        self.serve = Proc(
            "serve",
            ["serve", APP, "--port", str(port)],
            self._env(self.proxy.url("chaos-serve")),
            self.logs,
        )
        worker_args = [
            *("--concurrency", str(self.o.concurrency)),
            *("--lease-seconds", f"{self.o.lease:g}"),
            *("--poll-interval", "0.2"),
            # A run is quarantined after this many takeovers; the soak's kills are not the
            # run's fault, so the default of 3 would fail healthy runs that were unlucky.
            *("--max-recoveries", "20"),
            *("--status-interval", "0"),
        ]
        for i in range(self.o.workers):
            self.workers.append(
                Proc(
                    f"worker-{i + 1}",
                    ["worker", APP, *worker_args],
                    self._env(self.proxy.url(f"chaos-worker-{i + 1}")),
                    self.logs,
                )
            )
        self.procs = [self.serve, *self.workers]
        for proc in self.procs:
            proc.start()
        base = f"http://127.0.0.1:{port}"
        await self._wait_healthy(base)
        return base

    async def _wait_healthy(self, base: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{base}/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"serve did not get ready: see {self.logs / 'serve.log'}")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A query on the server itself (not through the proxy), bounded in time."""
        assert self.pg is not None
        with psycopg.connect(
            self.pg.url,
            autocommit=True,
            connect_timeout=5,
            options=f"-c search_path={SCHEMA} -c statement_timeout=10000",
        ) as conn:
            return conn.execute(sql, params).fetchall()

    # -- keeping the processes up -------------------------------------------------------------------

    async def keep(self) -> None:
        """Start again every process found dead: at its ``restart_at`` after a fault, else after
        a second (a worker exits 2 when it starts while the database is away)."""
        while self.keeping:
            now = time.monotonic()
            for proc in self.procs:
                if proc.alive() or proc.popen is None:
                    continue
                if proc.restart_at is None:
                    code = proc.popen.returncode
                    proc.unexpected_exits.append(code)
                    self.say(f"{proc.name} exited with {code}; starting it again in 1 s")
                    proc.restart_at = now + 1.0
                if now >= proc.restart_at:
                    proc.restart_at = None
                    proc.start()
            await asyncio.sleep(0.1)

    # -- faults -------------------------------------------------------------------------------------

    async def chaos(self, until: float) -> None:
        kinds: list[str] = []
        while True:
            await asyncio.sleep(min(self.rng.uniform(*self.o.gap), until - time.monotonic()))
            if time.monotonic() >= until - 0.5:
                return
            if not kinds:
                kinds = list(KINDS)
                self.rng.shuffle(kinds)
            kind = kinds.pop()
            try:
                await getattr(self, kind)()
            except Exception as exc:  # a fault that could not be injected is reported, not fatal
                self.notes.append(f"{kind} not injected: {type(exc).__name__}: {exc}")
                self.say(self.notes[-1])

    def _healthy_workers(self) -> list[Proc]:
        return [w for w in self.workers if w.alive() and not w.frozen]

    def _held(self, pid: int) -> list[str]:
        rows = self.query(
            "SELECT id FROM runs WHERE status = 'running' AND lease_owner LIKE %s",
            [f"%:{pid}:%"],
        )
        return [row[0] for row in rows]

    async def worker_kill(self) -> None:
        worker = self.rng.choice(self._healthy_workers())
        pid = worker.pid
        worker.restart_at = time.monotonic() + 0.5
        worker.kill()
        at = time.time()
        held = await asyncio.to_thread(self._held, pid)
        self.faults.append(Fault("worker_kill", at, at, pid, worker.name, held))
        self.say(f"kill -9 {worker.name} (pid {pid}) holding {len(held)} runs")

    async def worker_freeze(self) -> None:
        if any(w.frozen for w in self.workers):
            return await self.worker_kill()  # one zombie at a time
        worker = self.rng.choice(self._healthy_workers())
        async with self._pg_lock:  # not while the database is away: we ask it about the worker
            await self._stop_quietly(worker)
        pid, at = worker.pid, time.time()
        worker.frozen = True
        held = await asyncio.to_thread(self._held, pid)
        fault = Fault("worker_freeze", at, at, pid, worker.name, held)
        self.faults.append(fault)
        self.say(f"SIGSTOP {worker.name} (pid {pid}) holding {len(held)} runs")

        async def thaw() -> None:
            await asyncio.sleep(self.o.lease + 2.0)
            self._thaw(worker, fault)

        self._in_background(thaw())

    def _thaw(self, worker: Proc, fault: Fault) -> None:
        if worker.frozen:
            worker.signal(signal.SIGCONT)
            worker.frozen = False
            fault.end = time.time()
            self.say(f"SIGCONT {worker.name} after {fault.end - fault.start:.1f}s")

    async def _stop_quietly(self, worker: Proc) -> None:
        """SIGSTOP the worker at a moment it holds no open transaction: frozen inside one it
        would hold row locks, which is a different fault (a stuck session) than a zombie."""
        name = worker.env["DATAFLOWS_DATABASE_URL"].rsplit("application_name=", 1)[1]
        for _ in range(200):
            worker.signal(signal.SIGSTOP)
            busy = await asyncio.to_thread(
                self.query,
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = %s AND state <> 'idle'",
                [name],
            )
            if busy[0][0] == 0:
                return
            worker.signal(signal.SIGCONT)
            await asyncio.sleep(0.005)
        raise RuntimeError(f"{worker.name} never paused outside a transaction")

    async def pg_restart(self) -> None:
        pg = self._pg()
        mode = self.rng.choice(["fast", "immediate"])
        async with self._pg_lock:
            at = time.time()
            await asyncio.to_thread(pg.stop, mode)
            await asyncio.sleep(self.rng.uniform(0.0, 1.0))
            await asyncio.to_thread(pg.start)
            end = time.time()
        self.faults.append(Fault("pg_restart", at, end, detail=mode))
        self.say(f"PostgreSQL restarted ({mode}), down {end - at:.1f}s")

    async def pg_freeze(self) -> None:
        pg = self._pg()
        async with self._pg_lock:
            at = time.time()
            pg.freeze()
            try:
                await asyncio.sleep(self.rng.uniform(2.0, 3.0))
            finally:
                pg.thaw()
            end = time.time()
        self.faults.append(Fault("pg_freeze", at, end))
        self.say(f"PostgreSQL frozen {end - at:.1f}s")

    async def proxy_drop(self) -> None:
        assert self.proxy is not None
        at = time.time()
        cut = await asyncio.to_thread(self.proxy.drop)
        self.faults.append(Fault("proxy_drop", at, at, detail=f"{cut} connections"))
        self.say(f"proxy cut {cut} connections")

    async def serve_kill(self) -> None:
        assert self.serve is not None and self.load is not None
        if not self.serve.alive():
            return
        try:
            acknowledged = await asyncio.wait_for(self.load.next_acknowledged(), 10.0)
        except TimeoutError:
            self.notes.append("serve_kill: no 2xx within 10 s to kill serve after")
            return
        pid = self.serve.pid
        self.serve.restart_at = time.monotonic() + 0.5
        self.serve.kill()
        at = time.time()
        detail = f"after 2xx for {acknowledged.event_id}"
        self.faults.append(Fault("serve_kill", at, at, pid, detail, acknowledged.run_ids))
        self.say(f"kill -9 serve (pid {pid}) {detail}")

    def _pg(self) -> PrivatePostgres:
        assert self.pg is not None
        return self.pg

    def _in_background(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- the soak ------------------------------------------------------------------------------------

    async def run(self) -> Report:
        self.say(f"scratch {self.scratch}; seed {self.o.seed}; {self.o.seconds:g}s of chaos")
        base = await self.setup()
        self.load = Load(f"{base}/hooks/generic", self.o.rate, self.o.seed + 1)
        keeper = asyncio.create_task(self.keep())
        producer = asyncio.create_task(self.load.produce())
        started = time.monotonic()
        try:
            await self.chaos(started + self.o.seconds)
            self.chaos_seconds = time.monotonic() - started
            self.load.producing = False
            await producer
            await self.heal()
            drained = time.monotonic()
            await self.drain()
            self.drain_seconds = time.monotonic() - drained
        finally:
            self.load.producing = False
            self.keeping = False
            await keeper
        report = await asyncio.to_thread(self.check)
        return report

    async def heal(self) -> None:
        """Everything back: thaw what is frozen, the proxy passing, every process up."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for fault in self.faults:
            for worker in self.workers:
                if fault.kind == "worker_freeze" and worker.frozen and worker.pid == fault.pid:
                    self._thaw(worker, fault)
        self._pg().thaw()
        assert self.proxy is not None
        self.proxy.set_mode("pass")
        self.say("chaos over: draining")

    async def drain(self) -> None:
        assert self.load is not None
        deadline = time.monotonic() + self.o.drain_timeout
        while time.monotonic() < deadline:
            if not self.load.pending():
                rows = await asyncio.to_thread(
                    self.query,
                    "SELECT count(*) FROM runs WHERE status IN ('queued', 'running', 'waiting')",
                )
                if rows[0][0] == 0:
                    return
            await asyncio.sleep(0.2)
        self.notes.append(f"drain timed out after {self.o.drain_timeout:g}s")

    async def close(self) -> None:
        if self.load is not None:
            await self.load.close()
        for proc in self.procs:
            await asyncio.to_thread(proc.stop)
        if self.proxy is not None:
            self.proxy.close()
        if self.pg is not None:
            with contextlib.suppress(Exception):
                self.pg.thaw()
            await asyncio.to_thread(self.pg.close)

    # -- checking ------------------------------------------------------------------------------------

    def check(self) -> Report:
        assert self.load is not None
        runs = {
            row[0]: row
            for row in self.query("SELECT id, status, result, recoveries, completed_at FROM runs")
        }
        steps: dict[str, dict[str, tuple[Any, ...]]] = defaultdict(dict)
        step_rows = self.query(
            "SELECT run_id, step_key, kind, status, output, started_at, completed_at FROM steps"
        )
        for row in step_rows:
            steps[row[0]][row[1]] = row
        events = {row[0] for row in self.query("SELECT id FROM events")}
        twice = self.query(
            "SELECT run_id, step_key, count(*) FROM steps GROUP BY 1, 2 HAVING count(*) > 1"
        )
        effects = read_effects(self.effects)
        report = Report(seed=self.o.seed, scratch=str(self.scratch))
        v = report.violations

        # -- every 2xx has its runs; every run finishes; nothing stuck
        created = [d for d in self.load.deliveries if d.kind == "created"]
        paid = [d for d in self.load.deliveries if d.kind == "paid"]
        accepted = [d for d in created if d.accepted_at is not None]
        report.accepted = len(accepted)
        report.paid_accepted = sum(1 for d in paid if d.accepted_at is not None)
        report.unacknowledged = self.load.pending()
        acknowledged_runs: set[str] = set()
        for d in [*accepted, *paid]:
            if d.accepted_at is not None and d.event_id not in events:
                v.append(f"2xx for {d.event_id} but no such event")
        for d in accepted:
            if len(d.run_ids) != 1:
                v.append(f"2xx for {d.event_id} with run_ids {d.run_ids}")
                continue
            acknowledged_runs.add(d.run_ids[0])
            run = runs.get(d.run_ids[0])
            if run is None:
                v.append(f"2xx for {d.event_id} but its run {d.run_ids[0]} does not exist")
                report.lost += 1
            elif run[1] != "completed":
                v.append(f"run {run[0]} ({d.key}) is {run[1]}, not completed")
                report.lost += 1
            elif not json.loads(run[2])["paid"]:
                v.append(f"run {run[0]} ({d.key}) never got its order.paid event")
        report.completed = sum(1 for row in runs.values() if row[1] == "completed")
        report.runs = len(runs)
        report.stuck = sum(1 for row in runs.values() if row[1] in ("queued", "running", "waiting"))
        if report.stuck:
            v.append(f"{report.stuck} runs still queued, running or waiting after the drain")
        for row in runs.values():
            if row[1] != "completed" and row[0] not in acknowledged_runs:
                v.append(f"run {row[0]} (never acknowledged) is {row[1]}")
        for serve_kill in (f for f in self.faults if f.kind == "serve_kill"):
            for run_id in serve_kill.held:
                if run_id not in runs:
                    v.append(f"serve killed right after a 2xx: its run {run_id} is missing")

        # -- no step result recorded twice; each recorded output names one effect that happened
        for run_id, key, count in twice:
            v.append(f"step {key} of run {run_id} recorded {count} times")
        copies: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for effect in effects:
            copies[(effect["run"], effect["key"])].append(effect)
        by_id = {effect["effect"]: effect for effect in effects}
        committed: set[str] = set()
        for run_id, keyed in steps.items():
            for key, row in keyed.items():
                if row[2] != "run":
                    continue
                output = json.loads(row[4])
                found = by_id.get(output["effect"])
                if found is None or (found["run"], found["key"]) != (run_id, key):
                    v.append(
                        f"step {key} of run {run_id}: its effect {output['effect']} not logged"
                    )
                committed.add(output["effect"])
        report.effects = len(effects)

        # -- duplicated effects only at a crash point
        for (run_id, key), group in copies.items():
            for effect in group:
                if effect["effect"] in committed:
                    continue
                if len(group) == 1 and runs.get(run_id, (None, ""))[1] != "completed":
                    continue  # the run did not finish: counted as lost above
                report.duplicates += 1
                why = self.crash_point(effect, runs.get(run_id))
                report.duplicates_by_cause[why] += 1
                if why == "unexplained":
                    v.append(
                        f"effect {effect['effect']} of {key} in run {run_id} (pid {effect['pid']},"
                        f" t {effect['t']:.3f}) duplicated with no crash point"
                    )

        # -- no timer early
        margins: list[float] = []
        for run_id, keyed in steps.items():
            reserve = keyed.get("reserve")
            if reserve is None:
                continue
            due = json.loads(reserve[4])["t"] + flows.SETTLE
            for effect in copies.get((run_id, "charge"), []):
                margins.append(effect["t"] - due)
                if effect["t"] < due:
                    v.append(f"run {run_id}: charged {due - effect['t']:.3f}s before the timer")
            settle = keyed.get("settle")
            if settle is not None and settle[6] < due:
                v.append(f"run {run_id}: sleep recorded {due - settle[6]:.3f}s before it was due")
        report.timer_margin_min = min(margins) if margins else None

        # -- failover after kill -9 (and takeover of a frozen worker's runs)
        for fault in self.faults:
            if fault.kind not in ("worker_kill", "worker_freeze"):
                continue
            for run_id in fault.held:
                took = takeover(fault.start, steps.get(run_id, {}), runs.get(run_id))
                if took is None:
                    continue
                if fault.kind == "worker_kill":
                    report.failover.append(took)
                else:
                    report.freeze_takeover.append(took)

        # -- the figures
        report.chaos_seconds = round(self.chaos_seconds, 1)
        report.drain_seconds = round(self.drain_seconds, 1)
        report.deliveries = len(self.load.deliveries)
        report.requests = sum(self.load.statuses.values())
        report.statuses = dict(self.load.statuses)
        report.responses_503 = self.load.statuses.get("503", 0)
        report.max_503_latency = max(self.load.latency_503, default=None)
        report.p99_2xx_latency = percentile(self.load.latency_2xx, 0.99)
        report.faults = dict(Counter(f.kind for f in self.faults))
        report.fault_log = [asdict(f) for f in self.faults]
        report.fenced_writes = sum(
            (w.log.read_text(errors="replace").count(line) if w.log.exists() else 0)
            for w in self.workers
            for line in FENCED
        )
        report.unexpected_exits = {
            p.name: p.unexpected_exits for p in self.procs if p.unexpected_exits
        }
        report.notes = self.notes
        report.lease = self.o.lease
        report.rate = self.o.rate
        return report

    def crash_point(self, effect: dict[str, Any], run: tuple[Any, ...] | None) -> str:
        """Why a copy of an effect that did not count happened: the fault that took the run away
        from its worker between the effect and the commit of its step, or ``unexplained``."""
        if run is None or run[3] == 0:
            return "unexplained"  # no other worker ever took the run over
        t, pid, lease = effect["t"], effect["pid"], self.o.lease
        for fault in self.faults:
            near = fault.start - lease - SLACK <= t <= fault.end + SLACK
            if near and fault.pid == pid and fault.kind in ("worker_kill", "worker_freeze"):
                return "killed" if fault.kind == "worker_kill" else "frozen"
        for fault in self.faults:
            near = fault.start - lease - SLACK <= t <= fault.end + SLACK
            if near and fault.kind in ("pg_restart", "pg_freeze", "proxy_drop"):
                return "database outage" if fault.kind != "proxy_drop" else "connection cut"
        return "unexplained"


def takeover(
    at: float, steps: dict[str, tuple[Any, ...]], run: tuple[Any, ...] | None
) -> float | None:
    """Seconds from ``at`` to the next thing another worker recorded for the run: a step (a wait
    counts from when it was reached), or the run's completion."""
    times = []
    for row in steps.values():
        kind, started_at, completed_at = row[2], row[5], row[6]
        if kind == "wait":
            if started_at > at:
                times.append(started_at)
        elif completed_at > at:
            times.append(completed_at)
    if run is not None and run[4] is not None and run[4] > at:
        times.append(run[4])
    return min(times) - at if times else None


def read_effects(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Report:
    seed: int
    scratch: str
    chaos_seconds: float = 0.0
    drain_seconds: float = 0.0
    rate: float = 0.0
    lease: float = 0.0
    deliveries: int = 0
    requests: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    accepted: int = 0
    paid_accepted: int = 0
    unacknowledged: int = 0
    responses_503: int = 0
    max_503_latency: float | None = None
    p99_2xx_latency: float | None = None
    runs: int = 0
    completed: int = 0
    lost: int = 0
    stuck: int = 0
    effects: int = 0
    duplicates: int = 0
    duplicates_by_cause: Counter[str] = field(default_factory=Counter)
    timer_margin_min: float | None = None
    failover: list[float] = field(default_factory=list)
    freeze_takeover: list[float] = field(default_factory=list)
    faults: dict[str, int] = field(default_factory=dict)
    fenced_writes: int = 0
    unexpected_exits: dict[str, list[int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    #: Every fault injected, in order (times are Unix seconds).
    fault_log: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def figures(self) -> list[tuple[str, str]]:
        def secs(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f} s"

        crash = sum(n for cause, n in self.duplicates_by_cause.items() if cause != "unexplained")
        causes = ", ".join(f"{c} {n}" for c, n in sorted(self.duplicates_by_cause.items()))
        kill = self.failover
        margin = self.timer_margin_min
        frozen = self.freeze_takeover
        return [
            ("seed", str(self.seed)),
            ("chaos / drain", f"{self.chaos_seconds:g} s / {self.drain_seconds:g} s"),
            ("load", f"{self.rate:g} orders/s, 2 webhooks each; lease {self.lease:g} s"),
            ("webhook requests", f"{self.requests} ({self.deliveries} deliveries)"),
            ("responses", ", ".join(f"{k} {n}" for k, n in sorted(self.statuses.items()))),
            ("accepted (2xx orders)", str(self.accepted)),
            ("accepted (2xx payments)", str(self.paid_accepted)),
            ("never acknowledged", str(self.unacknowledged)),
            ("503 answers", str(self.responses_503)),
            ("max 503 latency", secs(self.max_503_latency)),
            ("p99 2xx latency", secs(self.p99_2xx_latency)),
            ("runs / completed", f"{self.runs} / {self.completed}"),
            ("lost", str(self.lost)),
            ("stuck after drain", str(self.stuck)),
            ("effects", str(self.effects)),
            ("duplicated effects", f"{self.duplicates} ({crash} at crash points: {causes or '-'})"),
            (
                "earliest charge after its timer",
                "-" if margin is None else f"{margin * 1000:+.1f} ms",
            ),
            (
                "failover after kill -9",
                f"p50 {secs(percentile(kill, 0.5))}, p99 {secs(percentile(kill, 0.99))},"
                f" max {secs(max(kill, default=None))} ({len(kill)} runs)",
            ),
            (
                "takeover from a frozen worker",
                f"p50 {secs(percentile(frozen, 0.5))}, max {secs(max(frozen, default=None))}"
                f" ({len(frozen)} runs)",
            ),
            ("writes refused by the fence", str(self.fenced_writes)),
            ("faults", ", ".join(f"{k} {n}" for k, n in sorted(self.faults.items()))),
            (
                "unexpected exits",
                ", ".join(f"{k} {v}" for k, v in self.unexpected_exits.items()) or "none",
            ),
            ("invariants", "hold" if self.ok else f"{len(self.violations)} VIOLATED"),
        ]

    def table(self) -> str:
        rows = self.figures()
        width = max(len(name) for name, _ in rows)
        lines = [f"{name:<{width}}  {value}" for name, value in rows]
        lines += [f"note: {note}" for note in self.notes]
        lines += [f"VIOLATION: {line}" for line in self.violations[:50]]
        if len(self.violations) > 50:
            lines.append(f"... and {len(self.violations) - 50} more violations")
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["duplicates_by_cause"] = dict(self.duplicates_by_cause)
        data["failover_p50"] = percentile(self.failover, 0.5)
        data["failover_p99"] = percentile(self.failover, 0.99)
        data["ok"] = self.ok
        return data


@contextlib.contextmanager
def scratch_dir(given: Path | None) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    path = Path(tempfile.mkdtemp(prefix="dataflows-chaos-"))
    yield path


async def soak(options: Options) -> Report:
    """Run one soak; the report (check ``report.ok``). The processes, the proxy and the server
    are gone when it returns, whatever happened."""
    with scratch_dir(options.scratch) as scratch:
        harness = Soak(options, scratch)
        try:
            report = await harness.run()
        finally:
            await harness.close()
    if options.json_path is not None:
        options.json_path.write_text(json.dumps(report.as_json(), indent=2) + "\n")
    if options.scratch is None and report.ok:
        shutil.rmtree(scratch, ignore_errors=True)
    return report


def parse(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="scripts/chaos",
        description="A chaos soak of serve + workers on a private PostgreSQL under webhook load.",
    )
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, help="length of the chaos phase in minutes")
    length.add_argument("--seconds", type=float, help="length of the chaos phase in seconds")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--rate", type=float, default=10.0, help="orders per second (default 10)")
    parser.add_argument("--lease", type=float, default=5.0, help="worker lease in s (default 5)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures to this file")
    parser.add_argument("--scratch", type=Path, default=None, help="keep logs in this folder")
    args = parser.parse_args(argv)
    seconds = 60.0
    if args.minutes is not None:
        seconds = args.minutes * 60
    elif args.seconds is not None:
        seconds = args.seconds
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    return Options(
        seconds=seconds,
        seed=seed,
        rate=args.rate,
        lease=args.lease,
        json_path=args.json,
        scratch=args.scratch,
        drain_timeout=max(60.0, args.lease * 4),
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(argv)
    report = asyncio.run(soak(options))
    print(report.table())
    if not report.ok:
        print(f"logs kept in {report.scratch}", file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
