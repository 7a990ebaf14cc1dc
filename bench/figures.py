"""From one repetition's raw result to its figures, and from repetitions to a summary."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.stats import latency_summary, percentile, spread

Figures = dict[str, Any]


def sequential(raw: dict[str, Any]) -> Figures:
    """(Temporal and Restate keep their state in their own servers: no INSERT baseline; Temporal
    also times local activities.)"""
    ms_per_step = raw["seconds"] / raw["steps"] * 1000
    baseline: Figures = {}
    if "insert_seconds" in raw:
        insert_ms = raw["insert_seconds"] * 1000
        baseline = {"insert_ms": insert_ms, "ratio_to_insert": ms_per_step / insert_ms}
    if "local_seconds" in raw:
        baseline["local_ms_per_step"] = raw["local_seconds"] / raw["steps"] * 1000
    return {
        "steps_per_s": raw["steps"] / raw["seconds"],
        "ms_per_step": ms_per_step,
        **baseline,
        **{
            f"{side}_cpu_ms_per_step": raw[f"{side}_cpu_seconds"] / raw["steps"] * 1000
            for side in ("client", "server")
            if f"{side}_cpu_seconds" in raw
        },
    }


def throughput(raw: dict[str, Any]) -> Figures:
    return {
        "runs_per_s": raw["runs"] / raw["seconds"],
        "steps_per_s": raw["runs"] * raw["steps_per_run"] / raw["seconds"],
    }


def event(raw: dict[str, Any]) -> Figures:
    return latency_summary(raw["latencies"])


def sleep(raw: dict[str, Any]) -> Figures:
    return latency_summary(raw["lateness"])


def memory(raw: dict[str, Any]) -> Figures:
    keys = (
        "count",
        "rss_idle_mb",
        "rss_suspended_mb",
        "rss_peak_mb",
        "rss_after_mb",
        "suspend_s",
        "resume_s",
        "resumed",
        "all_resumed",
    )
    return {k: raw[k] for k in (*keys, "server_rss_suspended_mb") if k in raw}


def webhook(raw: dict[str, Any]) -> Figures:
    top, fixed = raw["max"], raw["fixed"]
    return {
        "max_accepted_rps": top["accepted_rps"],
        "max_p50_ms": top["p50_ms"],
        "max_p99_ms": top["p99_ms"],
        "offered_rps": fixed["offered_rps"],
        "fixed_accepted_rps": fixed["accepted_rps"],
        "fixed_p50_ms": fixed["p50_ms"],
        "fixed_p99_ms": fixed["p99_ms"],
        "fixed_non_202": sum(n for s, n in fixed["statuses"].items() if s != "202"),
        "all_accepted_stored": raw["all_accepted_stored"],
    }


def failover(raw: dict[str, Any]) -> Figures:
    return latency_summary(raw["seconds"])


def budget(raw: dict[str, Any]) -> Figures:
    """How much of the budget the calls used, and the most calls any sliding period saw."""
    landed, limit, period = sorted(raw["landed"]), raw["limit"], raw["period_s"]
    span = landed[-1] - landed[0]
    # A full budget spends `limit` calls at once, then `limit` more each period: N calls take
    # (N - limit) / (limit / period) seconds from the first to the last.
    ideal = (len(landed) - limit) * period / limit
    most, low = 0, 0
    for high, t in enumerate(landed):
        while landed[low] <= t - period:
            low += 1
        most = max(most, high - low + 1)
    return {
        "calls": len(landed),
        "limit_per_s": limit / period,
        "achieved_per_s": (len(landed) - limit) / span if span > 0 else 0.0,
        "used_ratio": ideal / span if span > 0 else 0.0,
        "max_in_window": most,
        "never_above": most <= limit,
    }


def limited(raw: dict[str, Any]) -> Figures:
    steps = raw["runs"] * raw["steps_per_run"]
    return {
        "unlimited_steps_per_s": steps / raw["unlimited_seconds"],
        "limited_steps_per_s": steps / raw["limited_seconds"],
        "limited_ratio": raw["unlimited_seconds"] / raw["limited_seconds"],
    }


def starts(raw: dict[str, Any]) -> Figures:
    """Starts/s by ``callers`` concurrent callers, and against the bare INSERT's rate: how many
    starts land in the time one caller makes one single-row INSERT (≥ 1 means the system starts
    runs faster than one connection can INSERT rows)."""
    per_s = raw["starts"] / raw["seconds"]
    ms = [s * 1000 for s in raw["latencies"]]
    out: Figures = {
        "starts_per_s": per_s,
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
    }
    if "insert_seconds" in raw:
        out["insert_ms"] = raw["insert_seconds"] * 1000
        out["ratio_to_insert_rate"] = per_s * raw["insert_seconds"]
    return out


def mixed(raw: dict[str, Any]) -> Figures:
    """Steps/s draining a full queue, and while the same process starts the runs as it executes
    them; ``mixed_share`` = mixed ÷ drain."""
    steps = raw["runs"] * raw["steps_per_run"]
    drain, mixed_ = steps / raw["drain_seconds"], steps / raw["mixed_seconds"]
    ms = [s * 1000 for s in raw["start_latencies"]]
    return {
        "drain_steps_per_s": drain,
        "mixed_steps_per_s": mixed_,
        "mixed_share": mixed_ / drain,
        "start_p50_ms": percentile(ms, 50),
        "start_p99_ms": percentile(ms, 99),
    }


def event_remote(raw: dict[str, Any]) -> Figures:
    return latency_summary(raw["latencies"])


def two_workers(raw: dict[str, Any]) -> Figures:
    """Steps/s drained by one worker process and by two; ``scale`` = two ÷ one."""
    steps = raw["runs"] * raw["steps_per_run"]
    one, two = steps / raw["one_seconds"], steps / raw["two_seconds"]
    return {"one_steps_per_s": one, "two_steps_per_s": two, "scale": two / one}


EXTRACT = {
    "sequential": sequential,
    "throughput": throughput,
    "event": event,
    "sleep": sleep,
    "memory": memory,
    "webhook": webhook,
    "failover": failover,
    "budget": budget,
    "limited": limited,
    "starts": starts,
    "mixed": mixed,
    "event_remote": event_remote,
    "two_workers": two_workers,
}


def summarize(measure: str, raws: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each figure's median and min–max over the repetitions."""
    per_rep = [EXTRACT[measure](raw) for raw in raws]
    return {key: spread([figures[key] for figures in per_rep]) for key in per_rep[0]}


def best_variant(
    by_concurrency: dict[int, dict[str, dict[str, Any]]],
) -> tuple[int, dict[str, dict[str, Any]]]:
    """The concurrency whose median steps/s is highest, with its summary."""
    best = max(by_concurrency, key=lambda c: by_concurrency[c]["steps_per_s"]["median"])
    return best, by_concurrency[best]
