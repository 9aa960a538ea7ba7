"""The reference worker, starting slowly: it sleeps ``SLOW_START`` seconds (default 1) before
it starts, so it writes its ready row that much later, as a large application that loads for a
while before it consumes does."""

from __future__ import annotations

import os
import sys
import time

time.sleep(float(os.environ.get("SLOW_START", "1.0")))

from reference_worker.__main__ import main  # noqa: E402  (after the slow start, on purpose)

sys.exit(main())
