"""The reference worker: the executable specification of docs/contract.md.

``python -m reference_worker`` runs one worker; ``python -m reference_worker.probe`` prints
what is still queued, scheduled, leased, dead-lettered or locked. Both read only the CHAOS_*
env vars. ``REFERENCE_WORKER_BUGS=name,...`` turns on named deviations (see BUGS.md).

Modules, in the order a job meets them: ``registry`` (+ ``scripts``, ``keys``: the Redis
side), ``worker`` (the loop; + ``shutdown``), ``ledger`` (the PostgreSQL side), ``child``
(+ ``steps``, ``effects``, ``memory``: running one attempt), ``heartbeat``, ``reaper``,
``retries``, ``links`` (reconnecting), ``bugs``, ``probe``; ``testing`` holds helpers for
tests that drive it.
"""
