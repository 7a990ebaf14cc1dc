"""Testing workflows with pytest: a throw-away store, an in-process worker, virtual time.

``async with dataflows.testing.environment(app) as env`` (or the ``dataflows_env`` pytest
fixture) runs ``app`` for one test; see docs/testing.md.
"""

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
]
