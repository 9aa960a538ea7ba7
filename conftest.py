"""Repository-wide test configuration: every history a test writes is validated against the
history format's JSON Schema (``harness/schemas/``) when the test ends."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _validate_histories(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that used ``jobchaos_artifacts`` (itself or through a fixture), check
    each ``history.jsonl`` it wrote under that directory; a bad line makes the test error,
    naming the file, the line and the problem."""
    if "jobchaos_artifacts" not in request.fixturenames:
        yield
        return
    # Requested here, so the artifacts outlive the fixtures that write histories into them.
    artifacts: Path = request.getfixturevalue("jobchaos_artifacts")
    started = time.time() - 1.0  # older files are left from earlier runs
    yield
    from harness.history import HistoryError, validate_file

    problems = []
    for path in sorted(artifacts.rglob("history.jsonl")):
        if path.stat().st_mtime < started:
            continue
        try:
            validate_file(path)
        except HistoryError as e:
            problems.append(str(e))
    if problems:
        pytest.fail("history does not follow its schema: " + "; ".join(problems), pytrace=False)
