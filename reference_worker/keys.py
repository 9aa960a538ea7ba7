"""The Redis keys of one queue. Everything the worker owns is prefixed with the queue's name.

========================  ======  ==========================================================
key                       type    holds
========================  ======  ==========================================================
``Q``                     list    envelopes, dispatched with LPUSH, taken from the right
``Q:jobs``                hash    job id -> envelope, while leased or scheduled
``Q:leases``              zset    job id -> lease expiry (ms, Redis TIME)
``Q:owners``              hash    job id -> ``worker|attempt`` of the attempt holding the lease
``Q:attempts``            hash    job id -> number of the last attempt started
``Q:state``               hash    job id -> queued, leased, scheduled, done, dead (dedupe)
``Q:scheduled``           zset    job id -> due time (ms) of a retry or a lock wait
``Q:dead``                hash    job id -> JSON ``{reason, detail, attempt, payload}``
``Q:locks``               set     names of the uniqueness lock keys ever taken
``Q:lock:<unique_key>``   string  ``job|worker|attempt`` of the holder, with a TTL
``Q:poison``              list    payloads that are not a JSON object with an ``id``
========================  ======  ==========================================================
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    queue: str

    @property
    def jobs(self) -> str:
        return f"{self.queue}:jobs"

    @property
    def leases(self) -> str:
        return f"{self.queue}:leases"

    @property
    def owners(self) -> str:
        return f"{self.queue}:owners"

    @property
    def attempts(self) -> str:
        return f"{self.queue}:attempts"

    @property
    def state(self) -> str:
        return f"{self.queue}:state"

    @property
    def scheduled(self) -> str:
        return f"{self.queue}:scheduled"

    @property
    def dead(self) -> str:
        return f"{self.queue}:dead"

    @property
    def locks(self) -> str:
        return f"{self.queue}:locks"

    @property
    def lock_prefix(self) -> str:
        return f"{self.queue}:lock:"

    @property
    def poison(self) -> str:
        return f"{self.queue}:poison"

    def lock(self, unique_key: str) -> str:
        return self.lock_prefix + unique_key
