"""Runs record the version of the code they started with."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

import dataflows as df
from dataflows.versions import code_version, sha256
from tests.engine.conftest import MakeApp, wait_status, worker


async def test_a_run_records_the_given_version_and_keeps_it_across_deploys(
    app: df.Dataflows, make_app: MakeApp
) -> None:
    @app.workflow("flow", version="2026-11-a")
    async def v1(event: df.Event, step: df.Step) -> Any:
        await step.wait_for_event("go", "go", timeout=None)
        return "done"

    async with worker(app):
        run_id = await app.start("flow")
        run = await wait_status(app, run_id, "waiting")
    assert run.version == "2026-11-a"

    new_app = make_app()
    new_app.workflow("flow", version="2026-11-b")(v1)
    async with worker(new_app):
        await new_app.send("go", {})
        run = await new_app.wait_for_run(run_id, timeout=15)
    assert (run.status, run.version) == ("completed", "2026-11-a")


async def test_without_version_a_run_records_the_fingerprint_of_its_code(
    app: df.Dataflows,
) -> None:
    async def flow(event: df.Event, step: df.Step) -> Any:
        return await step.run("a", lambda: 1)

    app.workflow("flow")(flow)
    async with worker(app):
        run = await app.wait_for_run(await app.start("flow"), timeout=15)
    assert run.version == code_version(flow)
    assert len(run.version) == 12
    queued = await app.get_run(await app.start("flow"))  # not started yet: no version
    assert queued.version is None


@pytest.mark.parametrize("bad", ["", "   ", 3, b"v1"])
def test_a_version_that_is_not_a_non_empty_string_is_refused(bad: Any) -> None:
    app = df.Dataflows("sqlite:///:memory:")
    with pytest.raises(ValueError, match=r"workflow 'flow': version=.* must be a non-empty string"):

        @app.workflow("flow", version=bad)
        async def flow(event: df.Event, step: df.Step) -> None:
            pass


_SOURCE = """
async def flow(event, step):
    {comment}
    total = 0
    for item in event.data["items"]:
        total += await step.run("{name}", lambda item=item: item * 2)
    return {{"total": total, "tags": frozenset({{"a", "b", "c"}})}}
"""


def _fingerprint(comment: str = "", name: str = "double", seed: str = "0") -> str:
    program = textwrap.dedent(
        f"""
        from dataflows.versions import code_version
        namespace = {{}}
        exec(compile({_SOURCE.format(comment=comment, name=name)!r}, "flows.py", "exec"), namespace)
        print(code_version(namespace["flow"]))
        """
    )
    env = {**os.environ, "PYTHONHASHSEED": seed}
    out = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_the_fingerprint_is_stable_across_processes_and_changes_with_the_code() -> None:
    first = _fingerprint(seed="1")
    assert first == _fingerprint(seed="2")  # string hashing differs, frozenset order too
    assert first == _fingerprint(comment="# a comment changes nothing")
    assert first != _fingerprint(name="triple")  # a renamed step is another version


def test_the_fingerprint_sees_nested_functions_and_not_line_numbers() -> None:
    def make(body: str, blank_lines: int = 0) -> Any:
        source = "\n" * blank_lines + (
            f"async def flow(event, step):\n    return await step.run('a', lambda: {body})\n"
        )
        namespace: dict[str, Any] = {}
        exec(compile(source, "flows.py", "exec"), namespace)
        return namespace["flow"]

    assert code_version(make("1")) == code_version(make("1", blank_lines=5))
    assert code_version(make("1")) != code_version(make("2"))  # the lambda's constant
    assert code_version(make("x.y")) != code_version(make("x.z"))  # the names it uses


@pytest.mark.parametrize("data", [b"", b"dataflows.workers/dataflows", bytes(range(256)) * 41])
def test_the_digest_without_openssl_is_sha256(data: bytes) -> None:
    """The fingerprint (and the store's lock and channel names) hash with CPython's own SHA-256,
    which must give hashlib's digests: a deploy must not change them."""
    assert sha256(data).hexdigest() == hashlib.sha256(data).hexdigest()
    digest = sha256()
    digest.update(data[:7])
    digest.update(data[7:])
    assert digest.digest() == hashlib.sha256(data).digest()
