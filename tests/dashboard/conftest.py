"""Dashboard fixtures: the HTTP API's (an app on SQLite and PostgreSQL, the ASGI app in-process)."""

from tests.http.conftest import make_api, new_app

__all__ = ["make_api", "new_app"]
