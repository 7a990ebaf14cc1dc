"""The HTTP API: an ASGI app over a :class:`~dataflows.Dataflows` app.

``create_api(app)`` builds it; ``dataflows_lifespan(api, worker=True)`` runs its startup and
shutdown (and a worker) from the lifespan of an app it is mounted in; ``app_from_env`` is a
uvicorn factory (``uvicorn --factory dataflows.http:app_from_env``) loading the app named by
``DATAFLOWS_APP``. They live in :mod:`dataflows.http.api` and load on first use, so the modules
here that need no server (:mod:`dataflows.http.views`, shared with the command line) import
without Starlette, which only ``dataflows-engine[server]`` installs. See docs/http-api.md and
docs/embedding.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dataflows.http.api import (
        DEFAULT_MAX_BODY_BYTES,
        app_from_env,
        create_api,
        dataflows_lifespan,
    )

__all__ = ["DEFAULT_MAX_BODY_BYTES", "app_from_env", "create_api", "dataflows_lifespan"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'dataflows.http' has no attribute {name!r}")
    from dataflows.extras import needed_for

    with needed_for("the HTTP API"):
        return getattr(importlib.import_module("dataflows.http.api"), name)
