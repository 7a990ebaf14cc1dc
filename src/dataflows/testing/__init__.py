"""Testing workflows with pytest: a throw-away store, an in-process worker, virtual time.

``async with dataflows.testing.environment(app) as env`` (or the ``dataflows_env`` pytest
fixture) runs ``app`` for one test; ``await dataflows.testing.replay(app, path)`` replays an
exported run's history against today's code; see docs/testing.md and docs/deploying.md.
"""

from dataflows.replay import replay
from dataflows.testing.environment import (
    EngineBusy,
    Environment,
    RunNotFinished,
    environment,
)
from dataflows.testing.mocks import StepCall, StepMock

__all__ = [
    "EngineBusy",
    "Environment",
    "RunNotFinished",
    "StepCall",
    "StepMock",
    "environment",
    "replay",
]
