"""The example app end to end on PostgreSQL, with real processes and a worker killed mid-run.

`dataflows serve` and two `dataflows worker` processes share a fresh schema; signed Azure DevOps
and Shopify webhooks come in over HTTP; one worker is killed with SIGKILL while it holds runs
whose ClickUp task was created but whose step result was not yet committed; the approvals are
decided through their links (the confirmation page, then its form). Then:

- every webhook answered 202 has its run, and every run completes with the right result;
- redeliveries are deduplicated (same event, same runs);
- each ClickUp task was created once per idempotency key; only runs that were recovered from the
  killed worker asked twice (at least once, guarantee 2), and got the same task back;
- the rate-limited Slack call was retried after its Retry-After and posted once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from examples.clickup import send_webhook
from examples.clickup.standins import StandIns
from tests.e2e.conftest import SECRETS, Cluster, process_env, wait_for
from tests.pg import DbTarget

pytestmark = pytest.mark.crash

WORK_ITEMS = list(range(101, 111))  # 10 Azure DevOps work items
ORDERS = list(range(5001, 5007))  # 6 Shopify orders
#: Short leases and polls, so the killed worker's runs are taken over within about 2 s.
WORKER_OPTIONS = (
    *("--concurrency", "4", "--lease-seconds", "2"),
    *("--poll-interval", "0.2", "--shutdown-grace", "5"),
)


@pytest.fixture
def cluster(pg_url: DbTarget, standins: StandIns, tmp_path: Path) -> Iterator[Cluster]:
    assert pg_url.schema is not None
    url = pg_url.url + ("&" if "?" in pg_url.url else "?") + "application_name=e2e"
    env = process_env(standins, DATAFLOWS_DATABASE_URL=url, DATAFLOWS_SCHEMA=pg_url.schema)
    harness = Cluster(tmp_path, env, standins)
    try:
        yield harness
    finally:
        harness.cleanup()


def test_webhooks_to_finished_runs_with_a_worker_killed(
    cluster: Cluster, standins: StandIns, pg_url: DbTarget
) -> None:
    migrated = cluster.run("migrate", "examples/clickup/app.py")
    assert migrated.returncode == 0, migrated.stderr
    server = cluster.serve()
    victim = cluster.worker("worker-a", *WORKER_OPTIONS)
    survivor = cluster.worker("worker-b", *WORKER_OPTIONS)
    for worker in (victim, survivor):  # both claim from the start, so both hold runs
        wait_for(worker.started, 30, f"{worker.name} to start")

    azure = {n: send_webhook.azure_work_item_created(n, secret=_azure_secret()) for n in WORK_ITEMS}
    shopify = {n: send_webhook.shopify_order_created(n, secret=_shopify_secret()) for n in ORDERS}
    accepted = {key: _accept(cluster, d) for key, d in _deliveries(azure, shopify)}
    # A provider redelivering the same delivery gets the same event and runs back.
    for key, delivery in (("azure", azure[WORK_ITEMS[0]]), ("shopify", shopify[ORDERS[0]])):
        original = accepted[(key, WORK_ITEMS[0] if key == "azure" else ORDERS[0])]
        assert _accept(cluster, delivery, duplicate=True) == original

    # Kill worker A while it holds a run whose ClickUp task exists but whose step is unrecorded.
    interrupted = wait_for(
        lambda: _side_effect_in_flight(pg_url, standins, victim.pid),
        20,
        f"worker A (pid {victim.pid}) to be inside a create-task call",
        interval=0.02,
    )
    victim.kill9()
    assert victim.popen.returncode == -9
    still_unrecorded = not _step_recorded(pg_url, interrupted, "create-task")

    # Decide every approval through its link as soon as its run has asked (approve the even
    # work items, reject the odd ones); the survivor does all the rest.
    copy_runs = {n: accepted[("azure", n)][1][0] for n in WORK_ITEMS}
    for n, run_id in copy_runs.items():
        request = _approval_of(cluster, run_id)
        link = request["approve_url"] if n % 2 == 0 else request["reject_url"]
        assert link.startswith(f"{cluster.api_url}/approvals/"), link
        response = send_webhook.decide(link, approved=n % 2 == 0)
        assert response.status_code == 200, response.text
        assert send_webhook.decide(link).status_code == 409  # a link works once

    order_runs = {n: accepted[("shopify", n)][1][0] for n in ORDERS}
    runs = {rid: _finished(cluster, rid) for rid in [*copy_runs.values(), *order_runs.values()]}

    # Every accepted webhook's run completed, with the right result, each step recorded once.
    for run in runs.values():
        assert run["status"] == "completed", (run, cluster.logs())
        keys = [s["key"] for s in run["steps"]]
        assert len(keys) == len(set(keys)), keys
    for n, run_id in copy_runs.items():
        result = runs[run_id]["result"]
        assert result["work_item"] == n
        assert result["approved"] is (n % 2 == 0)
        assert result["task"]["id"] == standins.tasks[f"{run_id}:create-task"]["id"]
        assert [s["key"] for s in runs[run_id]["steps"]] == [
            "fetch-item",
            "create-task",
            "approval",
            "ask-approval",
            "approval:decision",
            "cooldown",
        ]
    for n, run_id in order_runs.items():
        result = runs[run_id]["result"]
        assert result["order"] == n and result["message"]["channel"] == "C0DEMO"

    # Side effects: once per idempotency key; twice at most, and only for recovered runs.
    recovered = {rid for rid, run in runs.items() if run["recoveries"] > 0}
    assert interrupted in recovered
    assert set(standins.tasks) == {f"{rid}:create-task" for rid in copy_runs.values()}
    assert len({task["id"] for task in standins.tasks.values()}) == len(WORK_ITEMS)
    for key, requests in standins.task_requests.items():
        run_id = key.split(":")[0]
        assert requests == 1 or (requests == 2 and run_id in recovered), (key, requests)
    if still_unrecorded:  # the kill landed between the side effect and its commit
        assert standins.task_requests[f"{interrupted}:create-task"] == 2
    posted = standins.message_requests
    assert set(posted) == {f"{rid}:notify-slack" for rid in order_runs.values()} | {
        f"{rid}:ask-approval" for rid in copy_runs.values()
    }
    for key, requests in posted.items():
        assert requests == 1 or (requests == 2 and key.split(":")[0] in recovered), (key, requests)
    # The one 429 was retried: one more Slack call than messages posted.
    assert standins.rate_limited["slack"] == 1
    assert standins.calls["slack"] == sum(posted.values()) + 1
    if not recovered:  # (a kill would reset an in-memory retry)
        attempts = [s["attempts"] for run in runs.values() for s in run["steps"]]
        assert 2 in attempts, attempts
    assert standins.calls["azure"] <= len(WORK_ITEMS) + len(recovered)

    # The survivor and the API are fine, and the survivor stops gracefully on SIGTERM.
    assert server.alive() and survivor.alive()
    assert survivor.terminate(timeout=15) == 0


# -- helpers -------------------------------------------------------------------------------------


def _azure_secret() -> str:
    return SECRETS["DATAFLOWS_AZURE_DEVOPS_SECRET"]


def _shopify_secret() -> str:
    return SECRETS["DATAFLOWS_SHOPIFY_SECRET"]


def _deliveries(
    azure: dict[int, send_webhook.Delivery], shopify: dict[int, send_webhook.Delivery]
) -> Iterator[tuple[tuple[str, int], send_webhook.Delivery]]:
    # Interleaved, as two providers would be.
    for i in range(max(len(azure), len(shopify))):
        if i < len(WORK_ITEMS):
            yield ("azure", WORK_ITEMS[i]), azure[WORK_ITEMS[i]]
        if i < len(ORDERS):
            yield ("shopify", ORDERS[i]), shopify[ORDERS[i]]


def _accept(
    cluster: Cluster, delivery: send_webhook.Delivery, duplicate: bool = False
) -> tuple[str, list[str]]:
    response = delivery.post(cluster.api_url)
    assert response.status_code == 202, response.text
    body = response.json()
    assert len(body["run_ids"]) == 1, body
    assert body.get("duplicate", duplicate) is duplicate
    return body["event_id"], body["run_ids"]


def _query(pg_url: DbTarget, query: str, *params: Any) -> list[tuple[Any, ...]]:
    assert pg_url.schema is not None
    with psycopg.connect(pg_url.url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(pg_url.schema)))
        return conn.execute(query, params).fetchall()


def _runs_leased_by(pg_url: DbTarget, pid: int) -> list[str]:
    rows = _query(
        pg_url,
        "SELECT id FROM runs WHERE status = 'running' AND lease_owner LIKE %s",
        f"%:{pid}:%",
    )
    return [row[0] for row in rows]


def _step_recorded(pg_url: DbTarget, run_id: str, key: str) -> bool:
    rows = _query(pg_url, "SELECT 1 FROM steps WHERE run_id = %s AND step_key = %s", run_id, key)
    return bool(rows)


def _side_effect_in_flight(pg_url: DbTarget, standins: StandIns, pid: int) -> str | None:
    """A run leased by ``pid`` whose ClickUp task exists but whose create-task is unrecorded."""
    for run_id in _runs_leased_by(pg_url, pid):
        created = f"{run_id}:create-task" in standins.tasks
        if created and not _step_recorded(pg_url, run_id, "create-task"):
            return run_id
    return None


def _approval_of(cluster: Cluster, run_id: str) -> dict[str, Any]:
    """The approval request the run recorded (with its links), once it has."""

    def requested() -> dict[str, Any] | None:
        run = cluster.get(f"/runs/{run_id}")
        assert run["status"] not in ("failed", "cancelled"), run
        step = next((s for s in run["steps"] if s["key"] == "approval"), None)
        return step["output"] if step and step["status"] == "completed" else None

    request: dict[str, Any] = wait_for(requested, 30, f"run {run_id} to ask for approval")
    return request


def _finished(cluster: Cluster, run_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        run: dict[str, Any] = cluster.get(f"/runs/{run_id}")
        return run if run["status"] in ("completed", "failed", "cancelled") else None

    try:
        finished: dict[str, Any] = wait_for(done, 30, f"run {run_id} to finish")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{cluster.logs()}") from None
    return finished
