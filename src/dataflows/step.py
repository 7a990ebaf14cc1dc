"""The ``step`` object a workflow function receives.

Each method validates its arguments and takes its step key *when called*, before anything is
awaited, so ``asyncio.gather(step.run("a", f), step.run("b", g))`` keys steps in argument order on
every replay. The returned coroutine does the work.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dataflows import serialization
from dataflows.budgets import RateLimit, parse_rate_limit
from dataflows.durations import Duration, parse_duration, to_timestamp
from dataflows.errors import NonDeterminismError
from dataflows.execution import Execution, wait_event_value
from dataflows.models import Event
from dataflows.names import check_event_name, check_step_name
from dataflows.records import WaitMatch, lookup
from dataflows.retry import RetryPolicy

# Approvals and child runs are imported by the steps that use them: a worker whose workflows
# never ask loads neither.
if TYPE_CHECKING:
    from dataflows.approvals import Approval, ApprovalRequest


class Step:
    """Durable building blocks for a workflow: every call is recorded once and replayed after."""

    def __init__(self, execution: Execution) -> None:
        self._x = execution

    @property
    def run_id(self) -> str:
        return self._x.run.id

    @property
    def workflow_id(self) -> str:
        return self._x.workflow.id

    def _key(self, name: object) -> str:
        return self._x.step_key(name)

    def run(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        retry: RetryPolicy | int | None = None,
        timeout: Duration | None = None,
        rate_limit: RateLimit | None = None,
    ) -> Coroutine[Any, Any, Any]:
        """Call ``fn(*args)`` once and return its JSON result; replays return the stored result.

        ``retry`` is a :class:`RetryPolicy` or a number of retries (default: the workflow's);
        ``timeout`` bounds one attempt. ``rate_limit`` names a budget declared with
        ``app.rate_limit``: each attempt takes one unit just before ``fn`` is called, and
        without one the run waits until a unit frees (no thread held, no attempt spent).
        ``rate_limit=(name, "data.token")`` (or ``(name, callable)``) keys the budget by the
        triggering event.
        """
        if not callable(fn):
            raise TypeError(f"step.run needs a callable, got {fn!r}")
        policy = RetryPolicy.coerce(retry, self._x.workflow.retry)
        limit = None if timeout is None else parse_duration(timeout)
        unit = None
        if rate_limit is not None:
            check_step_name(name)
            use = parse_rate_limit(rate_limit, name, self._x.rt.registry.budgets)
            run_event = self._x.run.event
            key = use.key_for(dict(run_event.data), lambda: Event.from_stored(run_event))
            budget = use.budget
            unit = (budget.name, key, budget.limit, budget.period)
        return self._x.run_step(self._key(name), fn, args, policy, limit, unit)

    def sleep(self, name: str, duration: Duration) -> Coroutine[Any, Any, None]:
        """Suspend the run for ``duration`` (``"30s"``, ``"24h"``, seconds, a timedelta)."""
        seconds = parse_duration(duration)
        key = self._key(name)
        return self._x.sleep_step(key, self._x.rt.clock.now() + seconds)

    def sleep_until(self, name: str, when: datetime | float) -> Coroutine[Any, Any, None]:
        """Suspend the run until ``when`` (an aware datetime or a timestamp)."""
        at = to_timestamp(when)
        return self._x.sleep_step(self._key(name), at)

    def wait_for_event(
        self,
        name: str,
        event: str,
        *,
        match: str | None = None,
        where: Mapping[str, Any] | None = None,
        timeout: Duration | None,
    ) -> Coroutine[Any, Any, Event | None]:
        """Wait for an event named ``event``; ``None`` once ``timeout`` passes.

        ``match="data.x"``: the event's ``data.x`` equals the triggering event's ``data.x``.
        ``where={"data.x": value}``: exact values. ``timeout=None`` waits without limit.
        """
        check_event_name(event)
        filters = dict(_check_paths(where or {}))
        if match is not None:
            found, value = lookup(dict(self._x.run.event.data), _check_path(match))
            if not found:
                raise ValueError(f"match={match!r}: the triggering event has no such field")
            filters[match] = value
        seconds = None if timeout is None else parse_duration(timeout)
        key = self._key(name)
        deadline = None if seconds is None else self._x.rt.clock.now() + seconds
        return self._wait(key, WaitMatch(event, tuple(sorted(filters.items()))), deadline)

    async def _wait(self, key: str, match: WaitMatch, deadline: float | None) -> Event | None:
        return wait_event_value(await self._x.wait_step(key, match, deadline))

    def request_approval(
        self,
        name: str,
        *,
        title: str,
        details: Any = None,
        timeout: Duration,
        approvers: Sequence[str] | None = None,
    ) -> Coroutine[Any, Any, ApprovalRequest]:
        """Ask a human to approve or reject: a recorded step returning an
        :class:`ApprovalRequest` with signed, single-use links (``approve_url``, ``reject_url``)
        that expire after ``timeout``. Replays return the same request.

        Send the links to someone (a ``step.run`` posting them to chat, an email), then
        ``await step.wait_for_approval(request)``. ``details`` (JSON) is shown on the
        confirmation page. ``approvers``: only these identities (names of API keys) may decide,
        signed in. Needs the app's secret key and public URL (``DATAFLOWS_SECRET_KEY``,
        ``DATAFLOWS_PUBLIC_URL``).
        """
        import uuid

        from dataflows.approvals import ApprovalRequest, MissingSetting

        if not isinstance(title, str) or not title.strip():
            raise ValueError("request_approval needs a non-empty title")
        if timeout is None:
            raise ValueError("request_approval needs a timeout: its links expire with it")
        seconds = parse_duration(timeout)
        serialization.dumps(details, what="the approval's details", limit=self._x.rt.max_payload)
        who = tuple(approvers or ())
        if isinstance(approvers, str) or not all(isinstance(a, str) and a for a in who):
            raise ValueError("approvers must be a list of identities (non-empty strings)")
        factory = self._x.rt.approval_links
        if factory is None:
            raise MissingSetting("this worker cannot sign approval links")
        links = factory()
        links.urls("check")  # the public URL is set (a clear error at the call, not later)
        key = self._key(name)
        run_id, workflow_id, clock = self._x.run.id, self._x.workflow.id, self._x.rt.clock

        async def make() -> dict[str, Any]:
            approval_id = uuid.uuid4().hex
            created = clock.now()
            expires = float(int(created + seconds))
            approve_url, reject_url = links.urls(links.token(run_id, approval_id, expires))
            request = ApprovalRequest(
                approval_id, run_id, workflow_id, key, title, details, who, created, expires,
                approve_url, reject_url,
            )  # fmt: skip
            return request.to_json()

        return self._request(key, make)

    async def _request(
        self, key: str, make: Callable[[], Awaitable[dict[str, Any]]]
    ) -> ApprovalRequest:
        from dataflows.approvals import ApprovalRequest

        output = await self._x.run_step(key, make, (), RetryPolicy.coerce(0, RetryPolicy()), None)
        request = ApprovalRequest.from_json(output)
        if request is None:
            raise NonDeterminismError(self._x.run.id, key, "recorded as another step's output")
        return request

    def wait_for_approval(
        self, request: ApprovalRequest, *, name: str | None = None
    ) -> Coroutine[Any, Any, Approval | None]:
        """Wait for the decision on ``request``: an :class:`Approval`, or ``None`` when the
        request expires undecided. The step is named ``"{request step}:decision"`` unless
        ``name`` is given."""
        from dataflows.approvals import DECIDED_EVENT, ApprovalRequest

        if not isinstance(request, ApprovalRequest):
            raise TypeError("wait_for_approval takes what step.request_approval returned")
        key = self._key(name if name is not None else f"{request.key}:decision")
        match = WaitMatch(DECIDED_EVENT, (("data.approval_id", request.id),))
        return self._decision(key, match, request.expires_at)

    async def _decision(self, key: str, match: WaitMatch, deadline: float) -> Approval | None:
        from dataflows.approvals import Approval

        stored = await self._x.wait_step(key, match, deadline)
        return None if stored is None else Approval.from_event_data(stored["data"])

    def send_event(
        self, name: str, event_name: str, data: Mapping[str, Any], *, id: str | None = None
    ) -> Coroutine[Any, Any, str]:
        """Send an event once, even on replay; returns its id (default ``"{run_id}:{step_key}"``)."""
        return self._x.send_step(self._key(name), event_name, dict(data), id)

    def invoke(
        self,
        name: str,
        workflow_id: str,
        data: Mapping[str, Any],
        *,
        timeout: Duration | None = None,
    ) -> Coroutine[Any, Any, Any]:
        """Start a child run of ``workflow_id`` and return its result (``StepFailed`` if it fails)."""
        from dataflows.child_runs import invoke

        self._x.rt.registry.get(workflow_id)
        seconds = None if timeout is None else parse_duration(timeout)
        return invoke(self._x, self._key(name), workflow_id, dict(data), seconds)

    def patched(self, change_id: str) -> Coroutine[Any, Any, bool]:
        """Whether this run takes the code of change ``change_id``: ``True`` for a run that
        reaches this point for the first time under the changed code, ``False`` for a run whose
        history shows it passed this point under the code before it (recorded steps remain
        that the replay has not reached). The answer is recorded: later replays of the run
        answer the same. Keep both paths (``if await step.patched("id"): new else: old``)
        until the runs started before the change have finished. Each change id once per run.
        """
        return self._x.patched(change_id)


#: A workflow function: ``async def (event, step)``, registered with ``app.workflow(id)``.
WorkflowFn = Callable[[Event, Step], Awaitable[Any]]


def _check_path(path: object) -> str:
    if not isinstance(path, str) or not path.startswith("data.") or len(path) < 6:
        raise ValueError(f"invalid event path {path!r}: use 'data.field' or 'data.a.b'")
    return path


def _check_paths(where: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return [(_check_path(path), value) for path, value in where.items()]
