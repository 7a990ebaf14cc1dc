"""Step mocks: replace the function of ``step.run("name", fn)`` by name, and count the calls.

The environment runs every workflow with a :class:`MockingStep`, a :class:`dataflows.Step` whose
``run`` swaps the function of a mocked step name for the mock before anything else happens: the
step is keyed, retried, recorded and replayed exactly as it would be with the real function.
Only attempts that run call the mock; a replay returns the recorded result, as always.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from dataflows.context import current_step
from dataflows.models import Event
from dataflows.retry import NonRetriableError
from dataflows.step import Step, WorkflowFn


@dataclass(frozen=True, slots=True)
class StepCall:
    """One call of a mocked step: which run and step key, which attempt, with which arguments."""

    run_id: str
    workflow_id: str
    key: str
    attempt: int
    args: tuple[Any, ...]


class StepMock:
    """Stands in for the function of every ``step.run`` with this name (``name``, ``name#2`` …).

    ``side_effect``, when set, decides each call:

    - an exception instance or class: raised (``df.RetryAfterError("30s")`` and
      ``df.NonRetriableError`` steer the retries as from the real function);
    - a callable: called with the step's arguments; what it returns (awaited if awaitable) is
      the step's result;
    - an iterable (list, tuple, generator): one item per call, in order, each an exception to
      raise or a value to return. A call after the last item fails the step without retry.

    Otherwise every call returns ``return_value``.
    """

    def __init__(
        self,
        name: str,
        *,
        return_value: Any = None,
        side_effect: Any = None,
        workflow: str | None = None,
    ) -> None:
        self.name = name
        self.workflow = workflow
        self.return_value = return_value
        self.side_effect = side_effect
        #: Every call, oldest first.
        self.calls: list[StepCall] = []

    @property
    def side_effect(self) -> Any:
        return self._side_effect

    @side_effect.setter
    def side_effect(self, value: Any) -> None:
        self._side_effect = value
        self._items: Iterator[Any] | None = None
        if isinstance(value, Iterable) and not isinstance(value, str | bytes | Mapping):
            self._items = iter(value)

    @property
    def call_count(self) -> int:
        return len(self.calls)

    @property
    def called(self) -> bool:
        return bool(self.calls)

    @property
    def call_args(self) -> tuple[Any, ...] | None:
        """The arguments of the latest call (``None`` before the first)."""
        return self.calls[-1].args if self.calls else None

    def __repr__(self) -> str:
        scope = f" in {self.workflow!r}" if self.workflow else ""
        return f"<StepMock {self.name!r}{scope}: {self.call_count} call(s)>"

    async def __call__(self, *args: Any) -> Any:
        ctx = current_step()
        self.calls.append(StepCall(ctx.run_id, ctx.workflow_id, ctx.step_key, ctx.attempt, args))
        effect = self._side_effect
        if effect is None:
            return self.return_value
        if _is_exception(effect):
            raise _exception(effect)
        if self._items is not None:
            try:
                item = next(self._items)
            except StopIteration:
                raise NonRetriableError(
                    f"the mock of step {self.name!r} has no side effect left for call "
                    f"{self.call_count} (its iterable is exhausted)"
                ) from None
            if _is_exception(item):
                raise _exception(item)
            return item
        if callable(effect):
            value = effect(*args)
            if inspect.isawaitable(value):
                value = await value
            return value
        raise TypeError(
            f"side_effect of the mock of step {self.name!r} must be an exception, a callable or "
            f"an iterable, not {effect!r}"
        )


def _is_exception(value: object) -> bool:
    return isinstance(value, BaseException) or (
        isinstance(value, type) and issubclass(value, BaseException)
    )


def _exception(value: Any) -> BaseException:
    if not isinstance(value, type):
        return value  # type: ignore[no-any-return]
    try:
        return value()  # type: ignore[no-any-return]
    except TypeError:
        raise TypeError(
            f"side_effect {value.__name__} cannot be raised without arguments: give an instance, "
            f"e.g. {value.__name__}('30s')"
        ) from None


class MockingStep(Step):
    """A :class:`dataflows.Step` that calls the mock registered for a step's name, if any."""

    def __init__(self, inner: Step, find: Callable[[str, str], StepMock | None]) -> None:
        super().__init__(inner._x)
        self._find = find

    def run(
        self, name: str, fn: Callable[..., Any], *args: Any, **options: Any
    ) -> Coroutine[Any, Any, Any]:
        mock = self._find(self.workflow_id, name) if isinstance(name, str) else None
        return super().run(name, fn if mock is None else mock, *args, **options)


def with_mocks(fn: WorkflowFn, find: Callable[[str, str], StepMock | None]) -> WorkflowFn:
    """``fn`` run with a :class:`MockingStep` in place of its step."""

    @functools.wraps(fn)
    async def workflow(event: Event, step: Step) -> Any:
        return await fn(event, MockingStep(step, find))

    return workflow
