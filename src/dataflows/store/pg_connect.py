"""Why a PostgreSQL connection failed, in one line a person can act on (the password never
shown)."""

from __future__ import annotations

import contextlib
import re
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from dataflows.errors import (
    DatabaseAuthFailed,
    DatabaseNotFound,
    DatabaseUnreachable,
    StoreError,
    StoreUnavailable,
    UnknownDatabaseHost,
)

_NO_DATABASE = re.compile(r'database "(.+?)" does not exist')
_NO_ROLE = re.compile(r'role "(.+?)" does not exist')


def connect_error(exc: psycopg.Error, url: str) -> StoreError:
    """The dataflows error for a connection that failed with ``exc``, in one line.

    Permanent causes (no such database, credentials rejected, an unknown host name) become
    :class:`DatabaseRejected` errors, a server that does not answer :class:`DatabaseUnreachable`,
    anything else :class:`StoreUnavailable` with the driver's first line. libpq reports these
    causes as text only (no SQLSTATE before the session exists), hence the matching.
    """
    text = scrub(str(exc), url)
    params = _effective(exc, url)
    where, user = address(params), params.get("user") or "?"
    if found := _NO_DATABASE.search(text):
        return DatabaseNotFound(found.group(1), where)
    auth = _auth_problem(text, user)
    if auth is not None:
        return DatabaseAuthFailed(f"PostgreSQL {auth} on {where}", user=user, address=where)
    if "resolve host" in text or "translate host name" in text:
        if "Temporary failure" not in text:
            return UnknownDatabaseHost(params.get("host") or "?")
        return DatabaseUnreachable(where, "its host name cannot be resolved right now")
    for clue, reason in _UNREACHABLE:
        if clue in text:
            return DatabaseUnreachable(where, reason)
    first = text.removeprefix("connection failed: ").splitlines()[0] if text else type(exc).__name__
    return StoreUnavailable(f"cannot connect to PostgreSQL at {where}: {first}")


#: Driver text → the reason shown in "cannot reach PostgreSQL at … (reason)".
_UNREACHABLE = (
    ("Connection refused", "connection refused"),
    ("timeout expired", "no answer within the connect timeout"),
    ("timed out", "no answer within the connect timeout"),
    ("No route to host", "no route to host"),
    ("No such file or directory", "no server socket there"),
)


def _auth_problem(text: str, user: str) -> str | None:
    if "password authentication failed" in text:
        return f'rejected the password for user "{user}"'
    if "no password supplied" in text:
        return f'asks for a password for user "{user}" and the URL has none'
    if _NO_ROLE.search(text):
        return f'has no role (user) "{user}"'
    if "no pg_hba.conf entry" in text:
        return f'accepts no connection from this machine for user "{user}" (pg_hba.conf)'
    if "authentication failed" in text:
        return f'rejected the credentials of user "{user}"'
    return None


def _effective(exc: psycopg.Error, url: str) -> dict[str, str]:
    """Host, port, user and database the failed attempt used: libpq's, else the URL's."""
    params = {k: str(v) for k, v in conninfo_to_dict(url).items() if k != "password"}
    pgconn = exc.pgconn
    if pgconn is not None:
        for key, value in (("host", pgconn.host), ("port", pgconn.port), ("user", pgconn.user)):
            if value:
                params[key] = value.decode(errors="replace")
    return params


def address(params: dict[str, Any]) -> str:
    host = str(params.get("host") or "localhost")
    port = str(params.get("port") or "5432")
    if host.startswith("/"):  # a Unix-domain socket directory
        return f"{host}/.s.PGSQL.{port}"
    return f"{host}:{port}"


def scrub(text: str, url: str) -> str:
    """``text`` without the URL's password, which some driver messages quote."""
    passwords: set[str] = set()
    with contextlib.suppress(ValueError):
        passwords.add(urlsplit(url).password or "")
    with contextlib.suppress(psycopg.Error):
        passwords.add(str(conninfo_to_dict(url).get("password") or ""))
    for password in passwords - {""}:
        text = text.replace(password, "***")
    return text
