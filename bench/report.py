"""The results as one table in the terminal, as JSON, and as a chart (SVG, bench.chart).

``python -m bench.report FILE.json`` prints the table of a results file again and (re)writes its
chart next to it (``FILE.svg``); older results without the newer measures render too.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

#: (measure, figure, label, format) in the order the table shows them.
ROWS = [
    ("sequential", "steps_per_s", "sequential: steps/s", "{:,.0f}"),
    ("sequential", "ms_per_step", "sequential: ms/step", "{:.3f}"),
    ("sequential", "insert_ms", "  bare INSERT round trip, ms", "{:.3f}"),
    ("sequential", "ratio_to_insert", "  ms/step ÷ INSERT", "{:.2f}×"),
    ("sequential", "local_ms_per_step", "  local activities (Temporal), ms/step", "{:.3f}"),
    ("sequential", "client_cpu_ms_per_step", "  client/worker process CPU, ms/step", "{:.3f}"),
    ("sequential", "server_cpu_ms_per_step", "  server CPU (PostgreSQL or own), ms/step", "{:.3f}"),
    ("throughput", "steps_per_s", "throughput: steps/s", "{:,.0f}"),
    ("throughput", "runs_per_s", "throughput: runs/s", "{:,.0f}"),
    ("event", "p50_ms", "event → resumed: p50 ms", "{:.1f}"),
    ("event", "p99_ms", "event → resumed: p99 ms", "{:.1f}"),
    ("sleep", "p50_ms", "1 s sleep lateness: p50 ms", "{:.1f}"),
    ("sleep", "p99_ms", "1 s sleep lateness: p99 ms", "{:.1f}"),
    ("sleep", "min_ms", "  earliest (negative = early)", "{:.1f}"),
    ("memory", "count", "memory: runs suspended", "{:,.0f}"),
    ("memory", "rss_idle_mb", "  worker RSS idle, MiB", "{:.0f}"),
    ("memory", "rss_suspended_mb", "  worker RSS all suspended, MiB", "{:.0f}"),
    ("memory", "rss_peak_mb", "  worker RSS peak, MiB", "{:.0f}"),
    ("memory", "server_rss_suspended_mb", "  own server RSS all suspended, MiB", "{:.0f}"),
    ("memory", "all_resumed", "  all resumed", "{}"),
    ("webhook", "max_accepted_rps", "webhook: max 202/s", "{:,.0f}"),
    ("webhook", "max_p99_ms", "  p99 ms at max", "{:.1f}"),
    ("webhook", "fixed_accepted_rps", "webhook: 202/s at fixed load", "{:,.0f}"),
    ("webhook", "fixed_p50_ms", "  p50 ms at fixed load", "{:.1f}"),
    ("webhook", "fixed_p99_ms", "  p99 ms at fixed load", "{:.1f}"),
    ("webhook", "all_accepted_stored", "  every 202 stored", "{}"),
    ("failover", "p50_ms", "failover: kill -9 → resumed elsewhere, p50 ms", "{:.0f}"),
    ("failover", "p99_ms", "  p99 ms", "{:.0f}"),
    ("failover", "max_ms", "  slowest, ms", "{:.0f}"),
    ("failover", "samples", "  kills", "{:.0f}"),
    ("budget", "limit_per_s", "step budget: limit, calls/s", "{:,.0f}"),
    ("budget", "achieved_per_s", "  achieved, calls/s", "{:,.1f}"),
    ("budget", "used_ratio", "  share of the budget used", "{:.1%}"),
    ("budget", "max_in_window", "  most calls in any 1 s", "{:.0f}"),
    ("budget", "never_above", "  never above the limit", "{}"),
    ("limited", "unlimited_steps_per_s", "throughput without a limit: steps/s", "{:,.0f}"),
    ("limited", "limited_steps_per_s", "  with Concurrency(10) over 100 keys", "{:,.0f}"),
    ("limited", "limited_ratio", "  limited ÷ unlimited", "{:.0%}"),
    ("starts", "starts_per_s", "starts: runs started/s", "{:,.0f}"),
    ("starts", "p50_ms", "  start call p50 ms", "{:.2f}"),
    ("starts", "p99_ms", "  start call p99 ms", "{:,.1f}"),
    ("starts", "insert_ms", "  bare INSERT round trip, ms", "{:.3f}"),
    ("starts", "ratio_to_insert_rate", "  starts/s ÷ INSERTs/s", "{:.2f}×"),
    ("mixed", "mixed_steps_per_s", "mixed: steps/s, starting as it runs", "{:,.0f}"),
    ("mixed", "drain_steps_per_s", "  draining a full queue", "{:,.0f}"),
    ("mixed", "mixed_share", "  mixed ÷ drain", "{:.0%}"),
    ("mixed", "start_p50_ms", "  start call p50 ms", "{:.2f}"),
    ("mixed", "start_p99_ms", "  start call p99 ms", "{:,.1f}"),
    ("event_remote", "p50_ms", "event → resumed, other process: p50 ms", "{:.1f}"),
    ("event_remote", "p99_ms", "  p99 ms", "{:.1f}"),
    ("two_workers", "two_steps_per_s", "two worker processes: steps/s", "{:,.0f}"),
    ("two_workers", "one_steps_per_s", "  one worker process", "{:,.0f}"),
    ("two_workers", "scale", "  two ÷ one", "{:.2f}×"),
]


def cell(summary: dict[str, Any] | None, fmt: str) -> str:
    if summary is None:
        return ""
    median, low, high = summary["median"], summary["min"], summary["max"]
    if isinstance(median, bool):
        return "yes" if median else "NO"
    text = fmt.format(median)
    if len(summary["values"]) > 1 and low != high:
        text += f" ({fmt.format(low)}–{fmt.format(high)})"
    return text


def figure(results: dict[str, Any], backend: str, system: str, measure: str, key: str) -> Any:
    entry = results.get(backend, {}).get(system, {}).get(measure)
    if not entry or "figures" not in entry:
        return None
    return entry["figures"].get(key)


def failure(results: dict[str, Any], backend: str, system: str, measure: str) -> str:
    """A failure ("failed: why") or a measure not applicable ("n/a: why"), shortened."""
    entry = results.get(backend, {}).get(system, {}).get(measure)
    if entry and "not_applicable" in entry:
        text: str = f"n/a: {entry['not_applicable']}"
    elif entry and "failed" in entry:
        text = entry["failed"]
        text = text if text.startswith("failed to start") else f"failed: {text}"
    else:
        return ""
    return text if len(text) <= 70 else text[:67] + "..."


def repetitions_title(document: dict[str, Any]) -> str:
    """Like "3 repetitions (sequential: 5)" (older results: --repeat alone)."""
    repeat = document["options"]["repeat"]
    counts = document["options"].get("repetitions", {})
    other = sorted({f"{m}: {n}" for m, n in counts.items() if n != repeat})
    return f"{repeat} repetitions" + (f" ({', '.join(other)})" if other else "")


def baseline_line(document: dict[str, Any]) -> str:
    """The run's bare INSERT round trip at its start and end (absent from older results)."""
    b = document.get("baseline")
    if not b:
        return ""
    ends = [
        f"{label} {b[key]:.3f} ms" if b.get(key) is not None else f"{label} n/a"
        for label, key in (("start", "insert_ms_start"), ("end", "insert_ms_end"))
    ]
    return f"bare INSERT round trip on the harness's PostgreSQL: {', '.join(ends)}"


def table(document: dict[str, Any]) -> Table:
    systems: list[str] = document["options"]["systems"]
    results = document["results"]
    grid = Table(
        title=f"dataflows benchmark — median (min–max) of {repetitions_title(document)}",
        show_lines=False,
    )
    grid.add_column("backend")
    grid.add_column("measure")
    for system in systems:
        grid.add_column(system, justify="right")
    for backend in results:
        shown: set[str] = set()
        for measure, key, label, fmt in ROWS:
            cells = [cell(figure(results, backend, s, measure, key), fmt) for s in systems]
            if measure not in shown:  # a failure stands in its measure's first row
                shown.add(measure)
                cells = [
                    c or failure(results, backend, s, measure)
                    for c, s in zip(cells, systems, strict=True)
                ]
            if measure == "throughput" and key == "steps_per_s":
                cells = [
                    c + _best(results, backend, s) for c, s in zip(cells, systems, strict=True)
                ]
            if any(cells):
                grid.add_row(backend, label, *cells)
    return grid


def _best(results: dict[str, Any], backend: str, system: str) -> str:
    entry = results.get(backend, {}).get(system, {}).get("throughput")
    if not entry or "best_concurrency" not in entry:
        return ""
    best = entry["best_concurrency"]
    return f" @{best or 'unlimited'}"  # 0: DBOS's queue without a worker_concurrency limit


def print_report(document: dict[str, Any]) -> None:
    console = Console(width=max(120, Console().width))
    if line := baseline_line(document):
        console.print(line, highlight=False)
    console.print(table(document))
    for error in document["errors"]:
        console.print(
            f"[red]error[/red] {error['backend']}/{error['system']}/{error['measure']}: "
            f"{error['message']}",
            markup=True,
            highlight=False,
        )
    for skip in document.get("not_applicable", []):
        console.print(
            f"n/a {skip['backend']}/{skip['system']}/{skip['measure']}: {skip['message']}",
            highlight=False,
        )


def write_json(document: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


def write_chart(document: dict[str, Any], json_path: Path) -> Path:
    """The chart of the results beside their JSON (``X.json`` → ``X.svg``); returns its path."""
    from bench.chart import svg

    path = json_path.with_suffix(".svg")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(svg(document))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.report",
        description="Print a results file's table again and (re)write its chart (FILE.svg).",
    )
    p.add_argument("files", nargs="+", type=Path, help="results JSON written by bench/run")
    p.add_argument("--no-table", action="store_true", help="only write the chart")
    args = p.parse_args(argv)
    for path in args.files:
        document = json.loads(path.read_text())
        if not args.no_table:
            print_report(document)
        print(f"chart: {write_chart(document, path)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
