"""`python -m harness.toxiproxy --host 127.0.0.1 --port 8474 [--config FILE] [--seed N]`."""

from .server import main

raise SystemExit(main())
