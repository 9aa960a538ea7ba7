"""The worker kit: everything a shim for a third-party queue library needs from the contract,
so that the shim is the library-specific part only (docs/contract.md, "Test your own worker").

A shim calls, from the library's hooks::

    kit = Kit.from_env()                   # CHAOS_* env: worker id, policy, connections
    ...                                    # the library starts consuming
    kit.ready()                            # one chaos_ready row
    attempt = kit.begin(envelope)          # a job starts: its chaos_attempts row and id
    try:
        attempt.run()                      # the job's steps (in the job process)
    except Exception as exc:
        attempt.dead("exception", str(exc))    # or retrying(...), as the library decides
    else:
        attempt.completed()
    attempt.stopped()                      # the job process ended

and a probe script calls :func:`probe_main` with a function that reads the library's
structures into :func:`probe_state`. The kit is synchronous and single-process: it runs the
steps where it is called, in whatever process the library runs its jobs, and its connections
are opened on first use and reopened in a forked child.
"""

from harness.kit.links import REPORT_PATIENCE
from harness.kit.probe import NO_EXPIRY, print_probe, probe_main, probe_state
from harness.kit.reports import Attempt, Kit, KitError, as_job
from harness.kit.steps import CRASH_EXIT_CODE, EFFECT_MODES, EffectMode, StepFailed

__all__ = [
    "CRASH_EXIT_CODE",
    "EFFECT_MODES",
    "NO_EXPIRY",
    "REPORT_PATIENCE",
    "Attempt",
    "EffectMode",
    "Kit",
    "KitError",
    "StepFailed",
    "as_job",
    "print_probe",
    "probe_main",
    "probe_state",
]
