"""The workflow app of the chaos soak, run by ``dataflows serve`` and ``dataflows worker``.

An order arrives as the webhook ``generic/order.created``: the run reserves stock (an effect),
sleeps until ``SETTLE`` seconds after the reservation, charges (an effect), waits for the
``generic/order.paid`` webhook with the same ``key``, then ships (an effect).

Each effect stands in for a call to an external API: it appends one JSON line to the file named
by ``CHAOS_EFFECTS`` (``O_APPEND``, one ``write``, so lines from several processes never mix and
a line survives a ``kill -9`` right after it) with a fresh ``effect`` id, and the step returns that
id. The step's recorded output therefore names the one copy of the effect that counts; any other
copy of the same step is a duplicate the soak has to explain.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from typing import Any

import dataflows as df

#: Seconds between the reservation and the charge (a sleep held in the worker: under 2 s).
SETTLE = 1.5
#: The longest a request to the stand-in API takes to get there, and its answer to come back,
#: in seconds: a worker killed while the answer is on its way has made the effect but not
#: recorded it (a crash point).
API_LATENCY = (0.02, 0.05)

app = df.Dataflows()


def effect(name: str) -> dict[str, Any]:
    """Call the stand-in external API: one line in the effects log."""
    ctx = df.current_step()
    time.sleep(random.uniform(0, API_LATENCY[0]))  # the request on its way
    record = {
        "t": time.time(),
        "run": ctx.run_id,
        "key": ctx.step_key,
        "attempt": ctx.attempt,
        "pid": os.getpid(),
        "effect": uuid.uuid4().hex,
        "name": name,
    }
    fd = os.open(os.environ["CHAOS_EFFECTS"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)
    time.sleep(random.uniform(0, API_LATENCY[1]))  # the answer on its way back
    return {"t": record["t"], "pid": record["pid"], "effect": record["effect"]}


@app.workflow("order", trigger=df.on_event("generic/order.created"))
async def order(event: df.Event, step: df.Step) -> dict[str, Any]:
    reserved = await step.run("reserve", effect, "reserve")
    await step.sleep_until("settle", reserved["t"] + SETTLE)
    charged = await step.run("charge", effect, "charge")
    paid = await step.wait_for_event(
        "paid", event="generic/order.paid", match="data.key", timeout="30m"
    )
    shipped = await step.run("ship", effect, "ship")
    return {
        "key": event.data["key"],
        "paid": paid is not None,
        "effects": [reserved["effect"], charged["effect"], shipped["effect"]],
    }
