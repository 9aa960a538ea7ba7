"""``python -m reference_worker.probe``: what is still inside the reference worker's system.

Reads only Redis (the CHAOS_* env vars of docs/contract.md) and prints one
``harness.contract.ProbeState`` as JSON: queued (in dispatch order), scheduled (retries and
lock waits, by due time), leased (with owner and seconds left), dead letters with their reason,
and the uniqueness locks still held (``ttl`` None: the lock never expires).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import redis

from harness.contract import Dead, Lease, Lock, ProbeState, read_env
from reference_worker.keys import Keys
from reference_worker.registry import connect, lock_holder_job


def probe(client: redis.Redis, queue: str) -> ProbeState:
    keys = Keys(queue)
    pipe = client.pipeline(transaction=True)
    pipe.lrange(keys.queue, 0, -1)
    pipe.zrange(keys.scheduled, 0, -1)
    pipe.zrange(keys.leases, 0, -1, withscores=True)
    pipe.hgetall(keys.owners)
    pipe.hgetall(keys.dead)
    pipe.smembers(keys.locks)
    pipe.time()
    raw_queue, scheduled, leases, owners, dead, lock_keys, (secs, micros) = pipe.execute()
    now_ms = secs * 1000 + micros // 1000
    queued = [_job_id(raw) for raw in reversed(raw_queue)]  # the right end runs first
    leased = [Lease(_s(job), _s(owners.get(job, b"|")).rpartition("|")[0] or "unknown",
                    round((score - now_ms) / 1000, 3)) for job, score in leases]
    deaths = [Dead(_s(job), json.loads(body).get("reason") or "unknown")
              for job, body in sorted(dead.items())]
    locks = []
    for key in sorted(lock_keys):
        pipe = client.pipeline(transaction=True)
        pipe.get(key)
        pipe.pttl(key)
        holder, ttl = pipe.execute()
        if holder is None:
            continue  # released or expired
        locks.append(Lock(_s(key)[len(keys.lock_prefix):], None if ttl < 0 else ttl / 1000,
                          lock_holder_job(_s(holder))))
    return ProbeState(queued=tuple(j for j in queued if j), scheduled=tuple(map(_s, scheduled)),
                      leased=tuple(leased), dead=tuple(deaths), locks=tuple(locks))


def _job_id(raw: bytes) -> str:
    try:
        body: Any = json.loads(raw)
        return str(body["id"])
    except (ValueError, KeyError, TypeError):
        return ""


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def main() -> int:
    try:
        conn, _, _ = read_env(os.environ)
    except (KeyError, ValueError) as exc:
        print(f"reference_worker.probe: missing or bad contract env var: {exc}", file=sys.stderr)
        return 2
    client = connect(conn.redis_url, timeout=5.0)
    try:
        state = probe(client, conn.queue)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        print(f"reference_worker.probe: cannot read Redis at {conn.redis_url}: {exc}",
              file=sys.stderr)
        return 1
    finally:
        client.close()
    print(state.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
