"""The faults API: proxied links and faults named for what they do to the application.

    with faults.redis.latency(100):      # every Redis reply 100 ms late
        ...
    with faults.postgres.down():          # connections refused, live ones closed
        ...

Each operation injects at once and returns a `Fault` whose exit (or `heal()`) undoes it;
every inject and heal goes to the recorder (see `FaultRecorder`).
"""

from .link import Fault, FaultLink, StreamChoice
from .links import Faults, LinkPool, create_links, delete_links
from .recorder import FaultRecorder, ListRecorder
from .server import ServerChoice, toxiproxy_server

__all__ = [
    "Fault",
    "FaultLink",
    "FaultRecorder",
    "Faults",
    "LinkPool",
    "ListRecorder",
    "ServerChoice",
    "StreamChoice",
    "create_links",
    "delete_links",
    "toxiproxy_server",
]
