"""``db_write`` effects and the record of sent emails, done by the worker for its job
children, over a pipe.

Opening a PostgreSQL connection costs more than the whole rest of an attempt (the server forks
a backend for it), so a job child does not open its own: it sends the request to its worker,
whose effects thread runs the same one-statement transaction (effect row + dedupe key) on a
connection it keeps open, and answers. The child waits for the answer, so the step's order and
failure semantics are those of a write made by the child itself: a failed write raises in the
child, and a child killed meanwhile changes nothing (the write committed once, or not at all).

One :class:`Channel` (two pipes) per attempt. The effects thread owns the worker's ends from
the moment the channel is handed to it, and serves it until the child's end closes (the child
exited), so no file descriptor is ever closed by one thread while another uses it.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
from dataclasses import dataclass
from typing import Any

import psycopg

from reference_worker import ledger
from reference_worker.links import Link, describe
from reference_worker.log import log


class EffectFailed(Exception):
    """The worker could not make the effect (its database link is down, ...)."""


@dataclass(slots=True)
class Channel:
    """The pipes between one attempt's child and the effects thread."""

    job_id: str
    attempt: int
    attempt_id: int | None  # the attempt's identity, written on its effect rows
    requests_r: int
    requests_w: int
    replies_r: int
    replies_w: int

    @classmethod
    def open(cls, job_id: str, attempt: int, attempt_id: int | None) -> Channel:
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        return cls(job_id, attempt, attempt_id, req_r, req_w, rep_r, rep_w)

    def close(self) -> None:
        """Close all four ends (only for a channel that was never handed to a child)."""
        for fd in (self.requests_r, self.requests_w, self.replies_r, self.replies_w):
            os.close(fd)

    def child_side(self) -> EffectsClient:
        """In the child: drop the worker's ends, keep ours."""
        os.close(self.requests_r)
        os.close(self.replies_w)
        return EffectsClient(self.requests_w, self.replies_r)


class EffectsClient:
    """The child's end: one request, one answer, in order."""

    def __init__(self, requests: int, replies: int) -> None:
        self.requests = requests
        self.replies = replies
        self._buffer = b""

    def db_write(self, step: int, *, idempotent: bool) -> None:
        self._ask({"op": "db_write", "step": step, "idempotent": idempotent})

    def email_sent(self, step: int) -> bool:
        """Whether an earlier attempt recorded this step's email as accepted by the server."""
        return bool(self._ask({"op": "email_sent", "step": step}).get("sent"))

    def record_email(self, step: int) -> None:
        """Record that the server accepted this step's email."""
        self._ask({"op": "record_email", "step": step})

    def _ask(self, body: dict[str, object]) -> dict[str, object]:
        os.write(self.requests, json.dumps(body).encode() + b"\n")
        while b"\n" not in self._buffer:
            chunk = os.read(self.replies, 4096)
            if not chunk:
                raise EffectFailed("the worker closed the effects channel")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        reply: dict[str, object] = json.loads(line)
        if "error" in reply:
            raise EffectFailed(str(reply["error"]))
        return reply


class EffectsThread(threading.Thread):
    """Serves the channels of successive attempts, one at a time, on one connection."""

    def __init__(self, db: Link[psycopg.Connection[Any]], worker: str) -> None:
        super().__init__(name="effects", daemon=True)
        self.db = db
        self.worker = worker
        self._channels: queue.SimpleQueue[Channel | None] = queue.SimpleQueue()

    def serve(self, channel: Channel) -> None:
        """In the worker, right after the fork: close the child's ends and hand ours over."""
        os.close(channel.requests_w)
        os.close(channel.replies_r)
        self._channels.put(channel)

    def stop(self, timeout: float) -> None:
        self._channels.put(None)
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        while (channel := self._channels.get()) is not None:
            try:
                self._serve(channel)
            except Exception as exc:  # the thread must outlive any one channel
                log(f"effects channel of {channel.job_id}: {describe(exc)}")

    def _serve(self, channel: Channel) -> None:
        with open(channel.requests_r, "rb") as requests, \
                open(channel.replies_w, "wb", buffering=0) as replies:
            for line in requests:  # until the child's end closes
                reply = self._handle(channel, line)
                with contextlib.suppress(BrokenPipeError):  # the child was killed meanwhile
                    replies.write(json.dumps(reply).encode() + b"\n")

    def _handle(self, channel: Channel, line: bytes) -> dict[str, object]:
        job, attempt, op = channel.job_id, channel.attempt, "request"
        try:
            body = json.loads(line)
            op, step = str(body["op"]), int(body["step"])
            if op == "db_write":
                self.db.run(lambda conn: ledger.write_effect(
                    conn, job, step, attempt, self.worker, attempt_id=channel.attempt_id,
                    idempotent=bool(body["idempotent"])))
            elif op == "email_sent":
                return {"sent": self.db.run(lambda conn: ledger.email_sent(conn, job, step))}
            elif op == "record_email":
                self.db.run(lambda conn: ledger.record_email(conn, job, step, attempt,
                                                             self.worker))
            else:
                raise ValueError(f"unknown effects request {op!r}")
        except Exception as exc:  # every failure goes back to the job, which fails
            log(f"{job}: {op} for attempt {attempt} failed: {describe(exc)}")
            return {"error": describe(exc)}
        return {"ok": True}
