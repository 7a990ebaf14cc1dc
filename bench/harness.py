"""The benchmark run: which measures, on which systems and stores, how often, and the verdict.

Every repetition of every measure runs in a fresh child process (``bench.child``). On PostgreSQL
each system gets a database of its own, created for this run and dropped at its end; on SQLite
each repetition gets a fresh file. Repetitions are interleaved across systems (rep 1 of each
system, then rep 2 …) so slow drift of the machine does not favour one of them. Temporal and
Restate bring servers of their own: each of their children starts a fresh one (bench.servers).
A peer that cannot start is reported where its figures would be, in the table and the JSON;
a measure a system cannot take part in (its function raises ``NotImplementedError``) is shown as
"n/a" with the reason, and is not a failure.

The sequential measure runs ``max(--repeat, 5)`` repetitions, so its median and spread (and that
of its ratio to the bare INSERT round trip) rest on at least five. The bare INSERT round trip on
the harness's PostgreSQL is also measured at the start and the end of the whole run and recorded
in the JSON (``baseline``); the starts measure brackets each repetition with it too.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from bench import figures, machine
from bench.dbs import DEFAULT_PG_URL, create_database, drop_database, insert_round_trip
from bench.procs import ROOT
from bench.report import print_report, write_chart, write_json
from bench.servers import ServerStartError, restate_binary, temporal_binary
from bench.stats import latency_summary

SYSTEMS = ("dataflows", "dbos", "absurd", "temporal", "restate")
#: Peers that bring a server of their own, started by each measure's child (bench.servers), and
#: keep their state there: they run in the PostgreSQL section of the table without using it.
OWN_SERVER = {"temporal": temporal_binary, "restate": restate_binary}
MEASURES = (
    "sequential",
    "throughput",
    "event",
    "sleep",
    "memory",
    "webhook",
    "failover",
    "budget",
    "limited",
    "starts",
    "mixed",
    "event_remote",
    "two_workers",
)
#: Measures dataflows takes part in on SQLite besides sequential and throughput.
SQLITE_DATAFLOWS = ("starts", "mixed", "event_remote", "two_workers")
#: The sequential measure's repetitions are at least this many, whatever --repeat says.
SEQUENTIAL_MIN_REPEAT = 5
BACKENDS = ("postgres", "sqlite")
PACKAGES = {"dbos": "dbos", "absurd": "absurd_sdk", "temporal": "temporalio", "restate": "restate"}

#: Worker concurrencies tried for throughput (dataflows: worker concurrency; DBOS: the queue's
#: worker_concurrency, 0 = unlimited, its default; Absurd: connections, one SDK worker loop each).
#: Temporal: the worker's max_concurrent_activities and max_concurrent_workflow_tasks; Restate:
#: invocations in flight from the client (the server pushes them all to the service).
CONCURRENCY = {
    "dataflows": [8, 32, 128],
    "dbos": [8, 32, 0],
    "absurd": [4, 8, 16],
    "temporal": [8, 32, 128],
    "restate": [8, 32, 128],
}

#: Seconds a child may take before it is killed and recorded as failed.
TIMEOUTS = {
    "sequential": 300,
    "throughput": 1800,
    "event": 900,
    "sleep": 300,
    "memory": 5400,
    "webhook": 600,
    "failover": 600,
    "budget": 600,
    "limited": 1800,
    "starts": 900,
    "mixed": 1800,
    "event_remote": 900,
    "two_workers": 1800,
}

#: The sizes a slow peer's scale applies to, per measure: numbers of steps, runs or starts whose
#: figures are rates or per-step times, so fewer of them measure the same thing in less time.
SCALED_SIZES = {
    "sequential": ("steps",),
    "throughput": ("runs",),
    "starts": ("starts",),
    "mixed": ("runs",),
    "two_workers": ("runs",),
}

QUICK_MEASURES = "sequential,throughput,event,sleep"

#: Quick (CI) mode fails when dataflows' ms/step exceeds this multiple of the INSERT round trip.
QUICK_MAX_RATIO = 10.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/run",
        description="dataflows side by side with DBOS Transact, Absurd, Temporal and Restate "
        "(docs/benchmarks.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="CI mode: dataflows only, small sizes, no memory/webhook (< 1 min); "
        f"fails if ms/step > {QUICK_MAX_RATIO}× the INSERT round trip",
    )
    p.add_argument("--systems", help=f"comma-separated (default: {','.join(SYSTEMS)})")
    p.add_argument("--measures", help=f"comma-separated (default: {','.join(MEASURES)})")
    p.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated")
    p.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="repetitions of each measure; sequential runs max(REPEAT, "
        f"{SEQUENTIAL_MIN_REPEAT}), so the median and min–max of its ratio to the INSERT round "
        "trip rest on at least that many",
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    p.add_argument(
        "--pg-url",
        default=DEFAULT_PG_URL,
        help="a database on the server where the per-system databases are created",
    )
    p.add_argument("--steps", type=int, default=1000, help="steps of the sequential run")
    p.add_argument(
        "--runs",
        type=int,
        default=1000,
        help="runs in the throughput, limited, mixed and two_workers measures",
    )
    p.add_argument(
        "--run-steps",
        type=int,
        default=10,
        help="steps per run in the throughput, limited, mixed and two_workers measures",
    )
    p.add_argument(
        "--concurrency",
        default=None,
        help="throughput concurrencies for every system (default: per system)",
    )
    p.add_argument("--event-trials", type=int, default=200, help="event and event_remote trials")
    p.add_argument(
        "--event-gap",
        type=float,
        default=0.15,
        help="mean pause between event trials, s (uniformly random in 0..2×)",
    )
    p.add_argument("--sleep-trials", type=int, default=50)
    p.add_argument("--starts", type=int, default=10_000, help="runs started in the starts measure")
    p.add_argument(
        "--start-callers", type=int, default=64, help="concurrent callers in the starts measure"
    )
    p.add_argument(
        "--mixed-concurrency",
        type=int,
        default=32,
        help="worker concurrency in the mixed measure (both halves)",
    )
    p.add_argument(
        "--mixed-callers",
        type=int,
        default=16,
        help="concurrent callers starting runs in the mixed measure",
    )
    p.add_argument(
        "--workers-concurrency",
        type=int,
        default=32,
        help="concurrency of each worker process in the two_workers measure",
    )
    p.add_argument(
        "--suspended",
        type=int,
        default=100_000,
        help="runs held suspended in the memory measure (dataflows)",
    )
    p.add_argument(
        "--suspended-peers",
        type=int,
        default=5_000,
        help="workflows held suspended by the peers in the memory measure",
    )
    p.add_argument("--webhook-seconds", type=float, default=10)
    p.add_argument("--webhook-rate", type=float, default=1000, help="fixed offered load, req/s")
    p.add_argument("--webhook-workers", type=int, default=2, help="dataflows serve --workers")
    p.add_argument(
        "--failover-kills", type=int, default=20, help="workers killed in the failover measure"
    )
    p.add_argument("--budget-calls", type=int, default=1000, help="calls in the budget measure")
    p.add_argument("--budget-limit", type=int, default=100, help="the budget's calls per second")
    p.add_argument(
        "--temporal-scale",
        type=float,
        default=0.2,
        help="Temporal's sequential steps and throughput/mixed/two_workers runs and starts are "
        "this share of the others' (its dev server does ~100 steps/s: full sizes take minutes "
        "per repetition; the figures are rates)",
    )
    p.add_argument(
        "--max-ratio",
        type=float,
        default=QUICK_MAX_RATIO,
        help="the quick-mode regression threshold",
    )
    args = p.parse_args(argv)
    args.systems = args.systems or ("dataflows" if args.quick else ",".join(SYSTEMS))
    args.measures = args.measures or (QUICK_MEASURES if args.quick else ",".join(MEASURES))
    if args.quick:  # small sizes; the INSERT baseline and the ratio are the same measure
        args.steps, args.runs, args.concurrency = 200, 100, "16"
        args.event_trials, args.event_gap, args.sleep_trials = 20, 0.02, 10
    return args


@dataclass
class Plan:
    systems: list[str]
    measures: list[str]
    backends: list[str]
    repeat: int
    params: dict[str, dict[str, Any]]
    concurrency: dict[str, list[int]] = field(default_factory=dict)
    #: system -> factor applied to its work sizes (SCALED_SIZES); 1 for the others
    scale: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Plan:
        override = [int(c) for c in args.concurrency.split(",")] if args.concurrency else None
        return cls(
            systems=_choose(args.systems, SYSTEMS),
            measures=_choose(args.measures, MEASURES),
            backends=_choose(args.backends, BACKENDS),
            repeat=args.repeat,
            params={
                "sequential": {"steps": args.steps},
                "throughput": {"runs": args.runs, "steps": args.run_steps},
                "event": {"trials": args.event_trials, "gap": args.event_gap},
                "sleep": {"trials": args.sleep_trials, "gap": 0.02},
                "memory": {"dataflows": args.suspended, "peers": args.suspended_peers},
                "webhook": {
                    "seconds": args.webhook_seconds,
                    "rate": args.webhook_rate,
                    "workers": args.webhook_workers,
                },
                "failover": {"kills": args.failover_kills},
                "budget": {"calls": args.budget_calls, "limit": args.budget_limit},
                "limited": {
                    "runs": args.runs,
                    "steps": args.run_steps,
                    "concurrency": 128,
                    "keys": 100,
                    "limit": 10,
                },
                "starts": {"starts": args.starts, "callers": args.start_callers},
                "mixed": {
                    "runs": args.runs,
                    "steps": args.run_steps,
                    "concurrency": args.mixed_concurrency,
                    "callers": args.mixed_callers,
                },
                "event_remote": {"trials": args.event_trials, "gap": args.event_gap},
                "two_workers": {
                    "runs": args.runs,
                    "steps": args.run_steps,
                    "concurrency": args.workers_concurrency,
                },
            },
            concurrency={s: override or CONCURRENCY[s] for s in SYSTEMS},
            scale={"temporal": args.temporal_scale},
        )

    def applies(self, backend: str, system: str, measure: str) -> bool:
        if measure == "failover":  # kill -9 of a worker: Temporal's workers are separate too
            return system == "dataflows" or (
                system in ("temporal", "restate") and backend == "postgres"
            )
        if measure in ("budget", "limited"):  # dataflows' own features
            return system == "dataflows"
        if backend == "sqlite":  # the SQLite figures asked for; Absurd is PostgreSQL-only
            if system == "dataflows" and measure in SQLITE_DATAFLOWS:
                return True
            return system in ("dataflows", "dbos") and measure in ("sequential", "throughput")
        # (Temporal and Restate use their own servers' stores; listed with PostgreSQL.)
        return measure != "webhook" or system == "dataflows"

    def jobs(self) -> Iterator[tuple[str, str, str, int, dict[str, Any]]]:
        """(backend, measure, system, repetition, params) in run order: the repetitions of a
        measure interleaved across systems."""
        for backend in self.backends:
            for measure in self.measures:
                for rep in range(self.repetitions(measure)):
                    for system in self.systems:
                        if self.applies(backend, system, measure):
                            for params in self.variants(system, measure):
                                yield backend, measure, system, rep, params

    def repetitions(self, measure: str) -> int:
        """``repeat``, or at least SEQUENTIAL_MIN_REPEAT for the sequential measure."""
        if measure == "sequential":
            return max(self.repeat, SEQUENTIAL_MIN_REPEAT)
        return self.repeat

    def variants(self, system: str, measure: str) -> list[dict[str, Any]]:
        """The parameter sets of one repetition (throughput: one per concurrency)."""
        base = dict(self.params[measure])
        scale = self.scale.get(system, 1.0)
        if scale != 1.0:  # a slow peer does less of the same work: its figures are rates
            for size in SCALED_SIZES.get(measure, ()):
                base[size] = max(1, round(base[size] * scale))
        if measure == "memory":
            return [{"count": base["dataflows" if system == "dataflows" else "peers"]}]
        if measure == "throughput":
            return [{**base, "concurrency": c} for c in self.concurrency[system]]
        return [base]


def _choose(text: str, allowed: tuple[str, ...]) -> list[str]:
    chosen = [x.strip() for x in text.split(",") if x.strip()]
    unknown = sorted(set(chosen) - set(allowed))
    if unknown:
        raise SystemExit(f"unknown: {', '.join(unknown)} (choose from {', '.join(allowed)})")
    return [x for x in allowed if x in chosen]


class Stores:
    """One PostgreSQL database per system (created on first use) and a SQLite directory."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.databases: dict[str, str] = {}
        self.broken: dict[str, str] = {}  # system -> why its database could not be prepared
        self.sqlite_dir = Path(tempfile.mkdtemp(prefix="bench_sqlite_"))
        self.files = 0

    def url(self, backend: str, system: str) -> str:
        if backend == "sqlite":
            self.files += 1
            return f"sqlite:///{self.sqlite_dir / f'{system}_{self.files}.db'}"
        if system in OWN_SERVER:
            return ""  # its child starts the server, which keeps its own state
        if system in self.broken:
            raise RuntimeError(self.broken[system])
        if system not in self.databases:
            url = create_database(self.server_url, f"bench_{system}")
            self.databases[system] = url
            if system == "absurd":
                try:
                    absurdctl_init(url)
                except RuntimeError as exc:
                    self.broken[system] = str(exc)
                    raise
        return self.databases[system]

    def close(self) -> None:
        for url in self.databases.values():
            drop_database(self.server_url, url)
        shutil.rmtree(self.sqlite_dir, ignore_errors=True)


def absurdctl_init(url: str) -> None:
    """Install Absurd's schema with its own tool, as its docs say (``absurdctl init``)."""
    exe = Path(sys.executable).with_name("absurdctl")
    done = subprocess.run([str(exe), "init", "--database", url], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"absurdctl init failed: {done.stdout}{done.stderr}".strip())


@contextmanager
def stores(server_url: str) -> Iterator[Stores]:
    s = Stores(server_url)
    try:
        yield s
    finally:
        s.close()


def run_child(
    system: str, measure: str, url: str, params: dict[str, Any], baseline_url: str = ""
) -> dict[str, Any]:
    """One repetition in a fresh child. ``baseline_url``: where a measure bracketed by the bare
    INSERT round trip (starts) times it when ``url`` is not a database of ours (Temporal,
    Restate: the harness's PostgreSQL)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        spec = {
            "system": system,
            "measure": measure,
            "url": url,
            "params": params,
            "out": out.name,
            "baseline_url": baseline_url or url,
        }
        try:
            done = subprocess.run(
                [sys.executable, "-m", "bench.child", json.dumps(spec)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=TIMEOUTS[measure],
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"timed out after {TIMEOUTS[measure]} s") from None
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-6:])
            raise RuntimeError(f"exit {done.returncode}: {tail}")
        result: dict[str, Any] = json.loads(Path(out.name).read_text())
        return result


def execute(
    plan: Plan, server_url: str, log: Any
) -> tuple[dict[str, Any], list[dict[str, str]], list[dict[str, str]]]:
    """Run every job; returns the results, the errors, and the measures not applicable."""
    raws: dict[tuple[str, str, str, int], list[dict[str, Any]]] = {}
    errors: list[dict[str, str]] = []
    skipped: list[dict[str, str]] = []  # NotImplementedError: not applicable, not a failure
    failed: set[tuple[str, str, str]] = set()  # a measure that failed once is not repeated
    missing = {s for s in plan.systems if s in PACKAGES and find_spec(PACKAGES[s]) is None}
    for system in sorted(missing):
        errors.append(
            error(
                "*",
                system,
                "*",
                f"failed to start: {PACKAGES[system]} is not installed in {sys.prefix}",
            )
        )
    for system in sorted(set(plan.systems) & OWN_SERVER.keys() - missing):
        try:
            OWN_SERVER[system]()  # its server's executable is there
        except ServerStartError as exc:
            missing.add(system)
            errors.append(error("*", system, "*", str(exc)))
    with stores(server_url) as where:
        for backend, measure, system, rep, params in plan.jobs():
            key = (backend, system, measure)
            if system in missing or key in failed:
                continue
            log(f"{backend} {system} {measure} rep {rep + 1} {params}")
            started = time.monotonic()
            try:
                baseline = server_url if system in OWN_SERVER else ""
                url = where.url(backend, system)
                raw = run_child(system, measure, url, params, baseline)
            except Exception as exc:  # a peer that breaks must not stop the rest
                failed.add(key)
                errors.append(error(backend, system, measure, str(exc)))
                log(f"  FAILED: {exc}")
                continue
            if "not_applicable" in raw:
                failed.add(key)
                skipped.append(error(backend, system, measure, raw["not_applicable"]))
                log(f"  n/a: {raw['not_applicable']}")
                continue
            log(f"  {time.monotonic() - started:.1f} s")
            raws.setdefault((*key, params.get("concurrency", -1)), []).append(raw)
    results = mark_failed(plan, collect(raws, failed), errors)
    for s in skipped:
        entry = results.setdefault(s["backend"], {}).setdefault(s["system"], {})
        entry[s["measure"]] = {"not_applicable": s["message"]}
    return results, errors, skipped


def mark_failed(
    plan: Plan, results: dict[str, Any], errors: list[dict[str, str]]
) -> dict[str, Any]:
    """Put each failure in the results too, where the figures would have been: a system that
    failed to start under every measure it applies to, a measure that failed under it."""
    for e in errors:
        backends = plan.backends if e["backend"] == "*" else [e["backend"]]
        measures = plan.measures if e["measure"] == "*" else [e["measure"]]
        for backend in backends:
            for measure in measures:
                if plan.applies(backend, e["system"], measure):
                    entry = results.setdefault(backend, {}).setdefault(e["system"], {})
                    entry[measure] = {"failed": _short(e["message"])}
    return results


def _short(message: str) -> str:
    """The gist of an error: a ``failed to start: ...`` line if there is one, else its last."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        if "failed to start:" in line:
            return line[line.index("failed to start:") :]
    return lines[-1] if lines else message


def error(backend: str, system: str, measure: str, message: str) -> dict[str, str]:
    return {"backend": backend, "system": system, "measure": measure, "message": message}


def collect(
    raws: dict[tuple[str, str, str, int], list[dict[str, Any]]],
    failed: set[tuple[str, str, str]],
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for (backend, system, measure, concurrency), reps in raws.items():
        if (backend, system, measure) in failed:
            continue
        entry = results.setdefault(backend, {}).setdefault(system, {}).setdefault(measure, {})
        entry.setdefault("raw", {})[str(concurrency)] = [_compact(raw) for raw in reps]
        summary = figures.summarize(measure, reps)
        if measure == "throughput":
            entry.setdefault("by_concurrency", {})[concurrency] = summary
        else:
            entry["figures"] = summary
    for systems in results.values():
        for measures in systems.values():
            if "by_concurrency" in measures.get("throughput", {}):
                t = measures["throughput"]
                t["best_concurrency"], t["figures"] = figures.best_variant(t["by_concurrency"])
    return results


#: Raw sample lists longer than this (the starts measure's latencies) are kept as a summary.
RAW_SAMPLES_KEPT = 1000


def _compact(raw: dict[str, Any]) -> dict[str, Any]:
    """A repetition's raw result for the JSON, long sample lists summarized (after the figures
    were taken from them): 10,000 start latencies per repetition would swell the file."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, list) and len(value) > RAW_SAMPLES_KEPT:
            out[key] = {"summarized": True, **latency_summary(value)}
        else:
            out[key] = value
    return out


def quick_verdict(document: dict[str, Any], max_ratio: float) -> tuple[bool, str]:
    entry = document["results"].get("postgres", {}).get("dataflows", {}).get("sequential")
    if not entry:
        return False, "no sequential figure for dataflows on PostgreSQL"
    ratio = entry["figures"]["ratio_to_insert"]["median"]
    verdict = ratio <= max_ratio
    word = "ok" if verdict else "GROSS REGRESSION"
    return (
        verdict,
        f"{word}: dataflows ms/step is {ratio:.2f}× the INSERT round trip (limit {max_ratio}×)",
    )


def insert_baseline(server_url: str, log: Any) -> float | None:
    """The bare INSERT round trip on the harness's PostgreSQL, ms (None if it cannot be had)."""
    try:
        ms = insert_round_trip(server_url) * 1000
    except Exception as exc:  # the run goes on; the figure is missing from the header
        log(f"bare INSERT baseline FAILED: {exc}")
        return None
    log(f"bare INSERT round trip: {ms:.3f} ms")
    return ms


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = Plan.from_args(args)
    started = time.time()

    def log(text: str) -> None:
        print(f"[{time.time() - started:7.1f}s] {text}", file=sys.stderr, flush=True)

    before = insert_baseline(args.pg_url, log)
    results, errors, skipped = execute(plan, args.pg_url, log)
    after = insert_baseline(args.pg_url, log)
    document = {
        "options": {
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "systems": plan.systems,
            "concurrency": plan.concurrency,
            "repetitions": {m: plan.repetitions(m) for m in plan.measures},
        },
        "baseline": {
            "insert_ms_start": before,
            "insert_ms_end": after,
            "where": "the harness's PostgreSQL (--pg-url): single-row autocommit INSERT",
        },
        "machine": machine.describe(args.pg_url),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "results": results,
        "errors": errors,
        "not_applicable": skipped,
    }
    write_json(document, args.out)
    print_report(document)
    print(f"JSON: {args.out}")
    try:
        print(f"chart: {write_chart(document, args.out)}")
    except Exception as exc:  # the JSON is written; `python -m bench.report` can retry the chart
        print(f"chart not written: {exc!r}")
    if args.quick:
        ok, message = quick_verdict(document, args.max_ratio)
        print(message)
        return 0 if ok and not errors else 1
    return 0
