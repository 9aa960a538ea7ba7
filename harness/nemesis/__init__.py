"""The nemesis: faults as values (:mod:`harness.nemesis.events`), one interpreter that applies
and records them (:mod:`harness.nemesis.interpreter`), and replay files
(:mod:`harness.nemesis.replay`). Scenarios import the vocabulary from here."""

from harness.nemesis.events import (
    BUSY,
    KINDS,
    LINK_FAULTS,
    NOW,
    Event,
    Plan,
    PlanError,
    Trigger,
    after,
    dispatch,
    kill,
    kill_host,
    kill_job,
    link_fault,
    pause,
    plan,
    redispatch,
    restart,
    restart_server,
    signal,
)

__all__ = ["BUSY", "KINDS", "LINK_FAULTS", "NOW", "Event", "Plan", "PlanError", "Trigger",
           "after", "dispatch", "kill", "kill_host", "kill_job", "link_fault", "pause", "plan",
           "redispatch", "restart", "restart_server", "signal"]
