"""One repetition of one measure for one system, in a fresh process.

``python -m bench.child SPEC_JSON`` where the spec names ``system``, ``measure``, ``url``,
``params`` and ``out`` (the file the result JSON is written to). A fresh process per repetition
keeps systems apart (DBOS is a process-wide singleton) and memory figures honest.
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


def run(system: str, measure: str, url: str, params: dict[str, Any]) -> dict[str, Any]:
    if measure == "webhook":
        from bench.webhook import webhook

        return webhook(url, **params)
    module = importlib.import_module(MODULES[system])
    if measure != "sequential" or system in OWN_STORE:
        result: dict[str, Any] = getattr(module, measure)(url, **params)
        return result
    # The baseline brackets the run, in the same process and database, so drift cancels out.
    before = insert_round_trip(url)
    result = module.sequential(url, **params)
    after = insert_round_trip(url)
    result["insert_seconds"] = (before + after) / 2
    return result


def main() -> None:
    spec = json.loads(sys.argv[1])
    result = run(spec["system"], spec["measure"], spec["url"], spec["params"])
    Path(spec["out"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
