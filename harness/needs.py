"""Which scenarios apply to the worker under test: the ``jobchaos_needs`` marker.

``@pytest.mark.jobchaos_needs("locks", ...)`` says a scenario exercises these worker features
(``harness.profile.FEATURES``); when the worker profile declares one absent, the scenario is
skipped with the reason ``not applicable: <feature> (...)``: a feature the worker lacks can
never make a scenario pass.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import pytest

from harness.profile import FEATURES, WorkerProfile, not_applicable

MARKER = "jobchaos_needs"
MARKER_HELP = (f"{MARKER}(feature, ...): the scenario needs these worker features "
               f"({', '.join(FEATURES)}); it is skipped as not applicable when the worker "
               "profile declares one of them absent")


def skip_not_applicable(items: Iterable[pytest.Item], profile: WorkerProfile) -> None:
    """Mark every item needing a feature ``profile`` lacks as skipped, with the reason; a
    marker naming no known feature is a usage error."""
    from harness.services.cgroups import memory_limit_unavailable

    harness_limit = functools.cache(memory_limit_unavailable)  # asked at most once
    for item in items:
        needs = [f for m in item.iter_markers(MARKER) for f in m.args]
        unknown = sorted(set(needs) - set(FEATURES))
        if unknown:
            raise pytest.UsageError(f"@pytest.mark.{MARKER}({', '.join(map(repr, needs))}) on "
                                    f"{item.nodeid}: no feature named {', '.join(unknown)}; "
                                    f"known: {', '.join(FEATURES)}")
        reason = not_applicable(profile, needs, harness_limit)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))
