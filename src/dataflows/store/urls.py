"""Database URLs made safe to print: the one place a password is taken out of a URL."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def redact_password(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``: safe to print or log."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # e.g. an unclosed [IPv6] bracket: show the scheme only
        return url.partition(":")[0] + ":…"
    if password is None:
        return url
    netloc = parts.netloc.replace(f":{password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
