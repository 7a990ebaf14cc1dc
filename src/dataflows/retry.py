"""Retrying a failing step: how many times, how long to wait between, and the two errors a step
function raises to decide for itself (fail now, or retry no sooner than the server asked)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from dataflows.durations import Duration, parse_duration
from dataflows.errors import PayloadError


class NonRetriableError(Exception):
    """Raise from a step function to fail the step at once, without retries."""


class RetryAfterError(Exception):
    """Raise from a step function to retry it no sooner than ``delay`` (e.g. HTTP 429)."""

    def __init__(self, delay: float | str | timedelta, message: str = "") -> None:
        self.delay = parse_duration(delay)
        super().__init__(message or f"retry after {self.delay:g}s")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``retries`` further attempts after the first, with exponential backoff and jitter.

    The n-th retry waits ``initial * factor**(n-1)`` seconds, capped at ``maximum``, then shortened
    by up to ``jitter`` (a fraction) at random so a burst of failures does not retry in lockstep.
    """

    retries: int = 3
    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 300.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError("retries must be zero or more")
        if self.initial < 0 or self.maximum < 0 or self.factor < 1 or not 0 <= self.jitter < 1:
            raise ValueError(
                "backoff needs initial >= 0, maximum >= 0, factor >= 1, 0 <= jitter < 1"
            )

    def backoff(self, retry_number: int) -> float:
        """Seconds to wait before retry number ``retry_number`` (1 for the first retry)."""
        delay = min(self.maximum, self.initial * self.factor ** (retry_number - 1))
        return delay * (1 - self.jitter * random.random())

    @classmethod
    def coerce(cls, value: RetryPolicy | int | None, default: RetryPolicy) -> RetryPolicy:
        """Accept a policy, a bare number of retries, or ``None`` for ``default``."""
        if value is None:
            return default
        if isinstance(value, RetryPolicy):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return RetryPolicy(
                retries=value,
                initial=default.initial,
                factor=default.factor,
                maximum=default.maximum,
                jitter=default.jitter,
            )
        raise TypeError(f"retry must be a RetryPolicy or a number of retries, got {value!r}")

    @classmethod
    def fixed(cls, retries: int, delay: Duration) -> RetryPolicy:
        """The same delay before every retry, without jitter."""
        seconds = parse_duration(delay)
        return cls(retries=retries, initial=seconds, factor=1.0, maximum=seconds, jitter=0.0)


def retry_delay(exc: Exception, attempt: int, policy: RetryPolicy) -> float | None:
    """Seconds until the attempt after ``attempt`` failed with ``exc``; ``None`` when the step has
    failed for good (no retries left, :class:`NonRetriableError`, or a result too large to store)."""
    if isinstance(exc, NonRetriableError | PayloadError) or attempt > policy.retries:
        return None
    if isinstance(exc, RetryAfterError):
        return max(exc.delay, 0.0)
    return policy.backoff(attempt)
