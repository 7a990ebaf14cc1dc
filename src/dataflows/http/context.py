"""What every route works with: the app, the limits, and the enabled webhook sources."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import cast

from starlette.requests import Request

from dataflows.app import Dataflows
from dataflows.sources.base import Source

__all__ = ["ApiContext", "context"]


@dataclass(slots=True)
class ApiContext:
    app: Dataflows
    api_keys: tuple[str, ...]
    max_body_bytes: int
    environ: Mapping[str, str]
    _sources: Mapping[str, Source] | None = field(default=None, repr=False)

    def sources(self) -> Mapping[str, Source]:
        """The enabled webhook sources by name, resolved once (at startup, or on first use)."""
        if self._sources is None:
            self._sources = _enabled_sources(self.app, self.environ)
        return self._sources


def _enabled_sources(app: Dataflows, environ: Mapping[str, str]) -> Mapping[str, Source]:
    """Sources configured in code plus those enabled by ``DATAFLOWS_{SOURCE}_SECRET``."""
    from dataflows.sources import enabled_sources  # imports every built-in source: only if used

    return enabled_sources(app.sources, environ)


def context(request: Request) -> ApiContext:
    return cast(ApiContext, request.app.state.dataflows)
