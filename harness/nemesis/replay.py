"""Replay files: a scenario's plan, its policy, the test it belongs to and the seed, written
into every run's artifacts (``replay.json``) and read back by ``--jobchaos-replay FILE``.

A file that is missing, not JSON, or not a replay file is a :class:`ReplayError` with one
line naming the problem (the plugin turns it into a usage error).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from harness.nemesis.events import Plan, PlanError

FORMAT: Final = "jobchaos-replay"
FIX: Final = ("Fix: give the replay.json a failing run wrote into its artifacts (the command "
              "after 'replay:' in its report), unedited")
VERSION: Final = 1


class ReplayError(ValueError):
    """A replay file that cannot be used."""


@dataclass(frozen=True)
class Replay:
    """What reproduces one run: ``test`` (its pytest node id), ``seed``, ``policy`` (the
    run's policy fields) and ``plan``."""

    test: str
    seed: int
    policy: Mapping[str, Any]
    plan: Plan

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "version": VERSION, "test": self.test,
                           "seed": self.seed, "policy": dict(self.policy),
                           "plan": self.plan.to_dict()}, indent=1)

    def save(self, path: Path) -> Path:
        path.write_text(self.to_json())
        return path


def load(path: Path) -> Replay:
    """Read a replay file; :class:`ReplayError` with one line if it cannot be used."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ReplayError(f"--jobchaos-replay {path}: cannot read it ({exc.strerror}). Fix: "
                          "give the replay.json a failing run wrote into its artifacts") from None
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise ReplayError(f"--jobchaos-replay {path}: not JSON ({exc}). {FIX}") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise ReplayError(f"--jobchaos-replay {path}: not a jobchaos replay file (expected an "
                          f'object with "format": "{FORMAT}"). {FIX}')
    if body.get("version") != VERSION:
        raise ReplayError(f"--jobchaos-replay {path}: replay format version "
                          f"{body.get('version')!r}; this jobchaos reads version {VERSION}. "
                          "Fix: replay it with the jobchaos that wrote it, or record it again")
    try:
        return Replay(test=str(body["test"]), seed=int(body["seed"]),
                      policy=dict(body.get("policy") or {}), plan=Plan.from_dict(body["plan"]))
    except KeyError as exc:
        raise ReplayError(f"--jobchaos-replay {path}: the field {exc.args[0]!r} is "
                          f"missing. {FIX}") from None
    except (PlanError, TypeError, ValueError) as exc:
        raise ReplayError(f"--jobchaos-replay {path}: {exc}. {FIX}") from None
