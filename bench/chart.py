"""The results as a chart: one small panel per main measure, one bar per system (plain SVG).

Each panel shows one figure on one store (PostgreSQL if the results have it; Temporal and Restate
on their own servers, as in the table): the median over the repetitions as the bar, min–max as a
whisker, the value written at the bar's end, and whether lower or higher is better. dataflows'
bar is coloured, the peers' are grey; a peer that failed or does not take part in a measure is
labelled so where its bar would be. Panels no system has figures for are left out, so older
results without the newer measures render too. No dependency: the SVG is written as text.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from typing import Any

#: A panel's value for one system: (median, min, max) or None.
Value = tuple[float, float, float] | None


@dataclass(frozen=True)
class Panel:
    measure: str
    title: str
    unit: str
    higher_is_better: bool
    fmt: str
    value: Callable[[dict[str, Any]], Value]
    note: str = ""
    #: A value drawn as a dashed line (two_workers: 1× = the second process adds nothing).
    reference: float | None = None


def _figure(key: str) -> Callable[[dict[str, Any]], Value]:
    def value(entry: dict[str, Any]) -> Value:
        summary = entry.get("figures", {}).get(key)
        if summary is None or isinstance(summary["median"], bool):
            return None
        return float(summary["median"]), float(summary["min"]), float(summary["max"])

    return value


def _memory_per_1k(entry: dict[str, Any]) -> Value:
    """Worker RSS growth from idle to all suspended (plus the own server's RSS, which holds the
    suspended state, for Temporal and Restate), per 1,000 suspended runs; per repetition."""
    f = entry.get("figures", {})
    if not {"count", "rss_idle_mb", "rss_suspended_mb"} <= f.keys():
        return None
    reps = len(f["count"]["values"])
    server = f.get("server_rss_suspended_mb", {}).get("values", [0.0] * reps)
    per_1k = [
        (f["rss_suspended_mb"]["values"][i] - f["rss_idle_mb"]["values"][i] + server[i])
        / f["count"]["values"][i]
        * 1000
        for i in range(reps)
    ]
    return statistics.median(per_1k), min(per_1k), max(per_1k)


PANELS = [
    Panel("sequential", "sequential: one run's steps", "ms per step", False, "{:.2f}",
          _figure("ms_per_step")),
    Panel("throughput", "throughput (best concurrency)", "steps/s", True, "{:,.0f}",
          _figure("steps_per_s")),
    Panel("starts", "starting runs (concurrent callers)", "starts/s", True, "{:,.0f}",
          _figure("starts_per_s")),
    Panel("mixed", "starting and executing in one process", "steps/s", True, "{:,.0f}",
          _figure("mixed_steps_per_s")),
    Panel("event", "event sent → run resumed", "p50 ms", False, "{:.1f}", _figure("p50_ms")),
    Panel("event_remote", "event → resumed in another process", "p50 ms", False, "{:.1f}",
          _figure("p50_ms")),
    Panel("sleep", "1 s sleep: lateness", "p99 ms", False, "{:.0f}", _figure("p99_ms")),
    Panel("memory", "memory per 1,000 suspended runs", "MiB", False, "{:.2f}", _memory_per_1k,
          "worker RSS growth (Temporal, Restate: + their server's whole RSS)"),
    Panel("two_workers", "a second worker process", "steps/s two ÷ one", True, "{:.2f}×",
          _figure("scale"), "1× (dashed): the second process adds nothing", 1.0),
    Panel("failover", "kill -9 → resumed elsewhere", "p50 ms", False, "{:,.0f}",
          _figure("p50_ms")),
]  # fmt: skip

HIGHLIGHT = "dataflows"
COLOURS = {"highlight": "#1f6feb", "peer": "#8c959f", "whisker": "#24292f"}
PANEL_W, LABEL_W, BAR_W, ROW_H, HEAD_H, GAP = 330, 78, 180, 22, 46, 18
COLUMNS = 3


def _backend(results: dict[str, Any]) -> str:
    return "postgres" if "postgres" in results or not results else next(iter(results))


def _cell(entry: dict[str, Any] | None, panel: Panel) -> tuple[Value, str, str]:
    """The system's value, or why there is none (failed, n/a, not measured) and the detail."""
    if entry is None:
        return None, "not measured", ""
    if "not_applicable" in entry:
        return None, "n/a", entry["not_applicable"]
    if "failed" in entry:
        short = "failed to start" if entry["failed"].startswith("failed to") else "failed"
        return None, short, entry["failed"]
    value = panel.value(entry)
    return value, "" if value is not None else "no figure", ""


def _panel(panel: Panel, systems: list[str], entries: dict[str, Any], x: float, y: float) -> str:
    cells = [(s, *_cell(entries.get(s, {}).get(panel.measure), panel)) for s in systems]
    top = max((v[2] for _, v, _, _ in cells if v is not None), default=1.0) or 1.0
    if panel.reference is not None:
        top = max(top, panel.reference)
    better = "higher is better" if panel.higher_is_better else "lower is better"
    parts = [
        f'<g transform="translate({x:.0f},{y:.0f})">',
        f'<text x="0" y="14" class="title">{escape(panel.title)}</text>',
        f'<text x="0" y="30" class="unit">{escape(panel.unit)} · {better}</text>',
    ]
    if panel.note:
        parts.append(f'<text x="0" y="42" class="note">{escape(panel.note)}</text>')
    if panel.reference is not None:
        rx = LABEL_W + BAR_W * panel.reference / top
        parts.append(
            f'<path d="M{rx:.1f},{HEAD_H}V{HEAD_H + ROW_H * len(cells)}" stroke="#57606a" '
            'stroke-dasharray="3,3" stroke-width="1"/>'
        )
    for row, (system, value, why, detail) in enumerate(cells):
        ry = HEAD_H + row * ROW_H
        cls = "sys hl" if system == HIGHLIGHT else "sys"
        parts.append(
            f'<text x="{LABEL_W - 6}" y="{ry + 14}" class="{cls}" text-anchor="end">'
            f"{escape(system)}</text>"
        )
        if value is None:
            tip = f"<title>{escape(detail)}</title>" if detail else ""
            parts.append(f'<text x="{LABEL_W}" y="{ry + 14}" class="why">{tip}{escape(why)}</text>')
            continue
        median, low, high = value
        width = max(1.0, BAR_W * median / top)
        colour = COLOURS["highlight" if system == HIGHLIGHT else "peer"]
        parts.append(
            f'<rect x="{LABEL_W}" y="{ry + 3}" width="{width:.1f}" height="{ROW_H - 7}" '
            f'fill="{colour}" rx="2"/>'
        )
        if high > low:
            x0, x1 = LABEL_W + BAR_W * low / top, LABEL_W + BAR_W * high / top
            mid = ry + 3 + (ROW_H - 7) / 2
            parts.append(
                f'<path d="M{x0:.1f},{mid:.1f}H{x1:.1f}M{x0:.1f},{mid - 4:.1f}V{mid + 4:.1f}'
                f'M{x1:.1f},{mid - 4:.1f}V{mid + 4:.1f}" stroke="{COLOURS["whisker"]}" '
                'stroke-width="1.2" fill="none"/>'
            )
        label_x = LABEL_W + max(width, BAR_W * high / top) + 5
        parts.append(
            f'<text x="{label_x:.1f}" y="{ry + 14}" class="{"val hl" if system == HIGHLIGHT else "val"}">'
            f"{escape(panel.fmt.format(median))}</text>"
        )
    parts.append("</g>")
    return "\n".join(parts)


def svg(document: dict[str, Any]) -> str:
    """The chart of a results document (as written by bench/run) as SVG text."""
    results: dict[str, Any] = document.get("results", {})
    backend = _backend(results)
    entries: dict[str, Any] = results.get(backend, {})
    systems: list[str] = document.get("options", {}).get("systems") or sorted(entries)
    shown = [p for p in PANELS if any(p.measure in entries.get(s, {}) for s in systems)]
    rows = max(1, -(-len(shown) // COLUMNS))
    panel_h = HEAD_H + ROW_H * len(systems) + GAP
    width = COLUMNS * PANEL_W + 20
    top = 58
    height = top + rows * panel_h + 10
    store = "PostgreSQL" if backend == "postgres" else "SQLite" if backend == "sqlite" else backend
    own = [s for s in systems if s in ("temporal", "restate")]
    subtitle = f"{store}" + (
        f" ({' and '.join(own)}: their own servers)" if own and backend == "postgres" else ""
    )
    options = document.get("options", {})
    reps = options.get("repeat", "?")
    seq = options.get("repetitions", {}).get("sequential")
    reps_text = f"{reps} repetition{'' if reps == 1 else 's'}" + (
        f" (sequential {seq})" if seq and seq != reps else ""
    )
    head = (
        f"{subtitle} · bar: median of {reps_text} · whisker: min–max · "
        f"{document.get('started', '')}"
    )
    body = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif">',
        "<style>"
        ".title{font-size:13px;font-weight:bold;fill:#24292f}"
        ".unit{font-size:11px;fill:#57606a}.note{font-size:10px;fill:#57606a;font-style:italic}"
        ".sys{font-size:11px;fill:#24292f}.hl{font-weight:bold;fill:#0b4fb3}"
        ".val{font-size:10.5px;fill:#24292f}.why{font-size:11px;fill:#8c959f;font-style:italic}"
        ".h1{font-size:16px;font-weight:bold;fill:#24292f}.h2{font-size:11.5px;fill:#57606a}"
        "</style>",
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        '<text x="10" y="22" class="h1">dataflows and its peers</text>',
        f'<text x="10" y="42" class="h2">{escape(head)}</text>',
    ]
    for i, panel in enumerate(shown):
        x = 10 + (i % COLUMNS) * PANEL_W
        y = top + (i // COLUMNS) * panel_h
        body.append(_panel(panel, systems, entries, x, y))
    body.append("</svg>")
    return "\n".join(body) + "\n"
