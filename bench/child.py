"""One repetition of one measure for one system, in a fresh process.

``python -m bench.child SPEC_JSON`` where the spec names ``system``, ``measure``, ``url``,
``params`` and ``out`` (the file the result JSON is written to), and optionally ``baseline_url``
(where the bare INSERT round trip is timed when ``url`` is not a database of ours). A fresh process
per repetition keeps systems apart (DBOS is a process-wide singleton) and memory figures honest.

A measure that cannot apply to a system raises ``NotImplementedError("why")``: the result is then
``{"not_applicable": "why"}`` and the child exits 0, so the harness shows "n/a", not a failure.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

from bench.dbs import insert_round_trip

MODULES = {
    "dataflows": "bench.sys_dataflows",
    "dbos": "bench.sys_dbos",
    "absurd": "bench.sys_absurd",
    "temporal": "bench.sys_temporal",
    "restate": "bench.sys_restate",
}

#: Peers that keep their state in a server of their own, not in the harness's database: their
#: sequential run has no INSERT baseline.
OWN_STORE = {"temporal", "restate"}

#: Measures bracketed by the bare INSERT round trip. Sequential: on the system's own database
#: (not for OWN_STORE peers, whose steps do not go there). Starts: the ratio of starts/s to
#: INSERTs/s is the figure, so every system gets it, on ``baseline_url`` for OWN_STORE peers.
BRACKETED = {"sequential", "starts"}


def run(
    system: str, measure: str, url: str, params: dict[str, Any], baseline_url: str = ""
) -> dict[str, Any]:
    if measure == "webhook":
        from bench.webhook import webhook

        return webhook(url, **params)
    module = importlib.import_module(MODULES[system])
    where = baseline_url or url
    if measure not in BRACKETED or not where or (measure == "sequential" and system in OWN_STORE):
        result: dict[str, Any] = getattr(module, measure)(url, **params)
        return result
    # The baseline brackets the run, in the same process and database, so drift cancels out.
    before = insert_round_trip(where)
    result = getattr(module, measure)(url, **params)
    after = insert_round_trip(where)
    result["insert_seconds"] = (before + after) / 2
    return result


def main() -> None:
    spec = json.loads(sys.argv[1])
    try:
        result = run(
            spec["system"],
            spec["measure"],
            spec["url"],
            spec["params"],
            spec.get("baseline_url", ""),
        )
    except NotImplementedError as exc:
        result = {"not_applicable": str(exc) or "not implemented"}
    Path(spec["out"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
