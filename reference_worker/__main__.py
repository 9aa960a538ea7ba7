"""``python -m reference_worker``: run one worker, configured by the CHAOS_* env vars."""

from __future__ import annotations

import os
import sys


def main() -> int:
    # Bug switches are checked before anything heavy is imported: a typo fails at once.
    from reference_worker.bugs import ENV_BUGS, UnknownBugError, parse

    try:
        bugs = parse(os.environ.get(ENV_BUGS))
    except UnknownBugError as exc:
        print(f"reference_worker: {exc}", file=sys.stderr, flush=True)
        return 2
    from reference_worker.worker import main as run

    return run(bugs)


if __name__ == "__main__":
    sys.exit(main())
