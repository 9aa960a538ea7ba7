"""The Redis side of the worker: fetch, heartbeat, settle and reap, one Lua script each.

In RQ's words this is the queue plus its registries (started, scheduled, failed); here every
change of a job's state is a single script, so no crash can leave a job half moved.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from reference_worker import scripts
from reference_worker.keys import Keys

Disposition = Literal["done", "retry", "dead"]
PROMOTE_LIMIT = 100  # due retries moved back to the queue per fetch
REAP_LIMIT = 100  # expired leases looked at per reaper pass


def connect(url: str, timeout: float) -> redis.Redis:
    """A client that fails fast and never retries by itself: the worker's loops decide."""
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                retry=Retry(NoBackoff(), 0), health_check_interval=0)


@dataclass(frozen=True, slots=True)
class Fetched:
    """A job now leased to this worker."""

    job_id: str
    payload: str
    attempt: int
    token: str  # "worker|attempt": proves ownership of the lease
    lock_key: str  # "" when the job has no unique_key
    lock_holder: str


@dataclass(frozen=True, slots=True)
class Skipped:
    """The queue had something that is not to be run now."""

    kind: Literal["empty", "poison", "duplicate", "locked"]
    job_id: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Expired:
    job_id: str
    token: str  # "" if the owner entry is missing
    payload: str

    @property
    def owner(self) -> tuple[str, int]:
        """(worker, attempt) of the attempt whose lease expired."""
        worker, _, attempt = self.token.rpartition("|")
        return worker or "unknown", int(attempt) if attempt.isdigit() else 0


def lock_holder_job(holder: str) -> str:
    """The job id inside a lock value ``job|worker|attempt``."""
    return holder.rsplit("|", 2)[0]


class Registry:
    """One queue's Redis state, as seen by one worker."""

    def __init__(self, client: redis.Redis, queue: str, worker: str, *,
                 restore: bool = True) -> None:
        self.client = client
        self.restore = restore  # heartbeat and settle put back a job Redis has forgotten
        self.keys = Keys(queue)
        self.worker = worker
        self._keys = scripts.key_list(self.keys)
        self._fetch = client.register_script(scripts.FETCH)
        self._heartbeat = client.register_script(scripts.HEARTBEAT)
        self._settle = client.register_script(scripts.SETTLE)
        self._expired = client.register_script(scripts.EXPIRED)

    def fetch(self, *, lease: float, lock_ttl: float | None, lock_retry: float,
              dedupe: bool = True) -> Fetched | Skipped:
        """Atomically take the next job with its lease (``lease`` 0: without one)."""
        reply: list[Any] = self._fetch(self._keys, [
            self.worker, _ms(lease), 0 if lock_ttl is None else _ms(lock_ttl), _ms(lock_retry),
            1 if dedupe else 0, PROMOTE_LIMIT, self.keys.lock_prefix,
        ])
        kind = _text(reply[0])
        if kind == "job":
            payload, attempt = _text(reply[1]), int(reply[2])
            body = json.loads(payload)
            job_id = str(body["id"])
            token = f"{self.worker}|{attempt}"
            unique_key = body.get("unique_key")
            lock_key = self.keys.lock(unique_key) if isinstance(unique_key, str) else ""
            return Fetched(job_id, payload, attempt, token, lock_key,
                           f"{job_id}|{token}" if lock_key else "")
        if kind == "empty":
            return Skipped("empty")
        if kind == "poison":
            return Skipped("poison", detail=_text(reply[1])[:200])
        return Skipped(kind, _text(reply[1]), _text(reply[2]))  # type: ignore[arg-type]

    def heartbeat(self, job: Fetched, *, lease: float, lock_ttl: float | None) -> int:
        """Extend the lease: 1 extended, 2 restored (Redis had forgotten it), 0 lost."""
        return int(self._heartbeat(self._keys, [
            job.job_id, job.token, _ms(lease), job.lock_key, job.lock_holder,
            0 if lock_ttl is None else _ms(lock_ttl), job.payload, job.attempt,
            1 if self.restore else 0,
        ]))

    def settle(self, job_id: str, token: str, disposition: Disposition, *, payload: str,
               attempt: int, delay: float = 0.0, dead: dict[str, Any] | None = None,
               lock_key: str = "", lock_holder: str = "", force: bool = False) -> bool:
        """End an attempt's hold on its job; False if that attempt no longer owns it
        (``force``: whoever owns it, as only a broken worker would)."""
        reply = self._settle(self._keys, [
            job_id, token, disposition, payload, attempt, _ms(delay),
            json.dumps(dead or {}), lock_key, lock_holder, "1" if force else "0",
            1 if self.restore else 0,
        ])
        return _text(reply) == "ok"

    def expired(self) -> list[Expired]:
        flat = [_text(x) for x in self._expired(self._keys, [REAP_LIMIT])]
        return [Expired(flat[i], flat[i + 1], flat[i + 2]) for i in range(0, len(flat), 3)]


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
