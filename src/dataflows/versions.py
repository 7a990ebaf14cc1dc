"""Workflow versions: the version a run records when it starts.

``app.workflow(..., version="2024-06-checkout")`` names it; without one it is a fingerprint of
the workflow function's code: the first 12 hex digits of a SHA-256 over its bytecode, its
constants (the code of the functions and lambdas defined inside it included, recursively), the
names it uses (globals, attributes, locals) and its argument count. So it stays the same across
processes and restarts, and changes when the function's own code changes. It does not change
with comments, blank lines, moving the function within its file or renaming the file; it does
not see the functions the workflow calls (only their names) nor the values of globals; and it
may change with the Python version (whose bytecode differs).
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hashlib import sha256
else:
    # CPython's own SHA-256, the one hashlib falls back to: the same digests, without hashlib
    # loading OpenSSL's (0.6 MiB a worker process otherwise never needs). The store hashes with
    # it too.
    try:
        from _sha2 import sha256  # Python 3.12+
    except ImportError:
        try:
            from _sha256 import sha256
        except ImportError:
            from hashlib import sha256

__all__ = ["check_version", "code_version", "sha256"]


def check_version(workflow_id: str, version: object) -> str | None:
    """``version=`` as given: ``None``, or a non-empty string (else ``ValueError`` naming the
    workflow and the option)."""
    if version is None:
        return None
    if not isinstance(version, str) or not version.strip():
        raise ValueError(
            f"workflow {workflow_id!r}: version={version!r} must be a non-empty string"
        )
    return version


def code_version(fn: Callable[..., Any]) -> str:
    """The fingerprint of ``fn``'s code (see the module's text)."""
    code = getattr(fn, "__code__", None)
    digest = sha256()
    if isinstance(code, types.CodeType):
        _feed(digest, code)
    else:  # not a plain function (a callable object): its qualified name stands in
        digest.update(repr(getattr(fn, "__qualname__", type(fn).__qualname__)).encode())
    return digest.hexdigest()[:12]


def _feed(digest: Any, code: types.CodeType) -> None:
    digest.update(code.co_code)
    digest.update(repr((code.co_argcount, code.co_kwonlyargcount, code.co_flags)).encode())
    digest.update(repr((code.co_names, code.co_varnames, code.co_freevars)).encode())
    for const in code.co_consts:
        _feed_const(digest, const)


def _feed_const(digest: Any, const: object) -> None:
    if isinstance(const, types.CodeType):
        digest.update(b"code:")
        _feed(digest, const)
    elif isinstance(const, tuple):
        digest.update(b"(")
        for item in const:
            _feed_const(digest, item)
        digest.update(b")")
    elif isinstance(const, frozenset):  # iteration order varies with string hashing: sorted
        digest.update(repr(sorted(repr(item) for item in const)).encode())
    else:
        digest.update(f"{type(const).__name__}:{const!r};".encode())
