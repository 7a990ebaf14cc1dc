"""Stores for the store tests: one per test on the `db` target, and a second on the same data."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from dataflows.store import Store, create_store
from tests.pg import DbTarget


def new_store(target: DbTarget) -> Store:
    """A store on ``target``, not opened yet."""
    return create_store(target.url, schema=target.schema or "dataflows")


@pytest.fixture
async def store(db: DbTarget) -> AsyncIterator[Store]:
    s = new_store(db)
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def other(db: DbTarget, store: Store) -> AsyncIterator[Store]:
    """A second store on the same database: another process, as far as the data goes."""
    s = new_store(db)
    await s.open()
    yield s
    await s.close()
