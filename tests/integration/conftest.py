"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reference_worker.testing import Tables


@pytest.fixture
def tables(database_url: str) -> Iterator[Tables]:
    """The contract tables of this test's database, read the way the tests need them."""
    t = Tables(database_url)
    yield t
    t.close()
