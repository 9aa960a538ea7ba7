"""The SMTP sink as a service, and the harness's view of the messages it received."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.services.base import Service


@dataclass(frozen=True, slots=True)
class SinkMessage:
    """One message the sink accepted."""

    seq: int
    received_at: float
    mail_from: str
    rcpt_tos: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]
    job: str | None
    step: str | None
    subject: str | None
    size: int

    def header(self, name: str) -> str | None:
        lname = name.lower()
        return next((v for k, v in self.headers if k.lower() == lname), None)

    @property
    def attempt(self) -> int | None:
        """The attempt that sent it, if the worker tagged it (``X-Chaos-Attempt``; optional)."""
        tag = (self.header("X-Chaos-Attempt") or "").strip()
        return int(tag) if tag.isdigit() and int(tag) >= 1 else None

    @property
    def attempt_id(self) -> int | None:
        """The identity of the attempt that sent it (its ``chaos_attempts.id``), if the worker
        tagged it (``X-Chaos-Attempt-Id``; optional)."""
        tag = (self.header("X-Chaos-Attempt-Id") or "").strip()
        return int(tag) if tag.isdigit() else None


def smtp_banner(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when an SMTP server at host:port greets with 220."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        ok = s.recv(512).startswith(b"220")
        s.sendall(b"QUIT\r\n")
        return ok


class MessageLog:
    """Reads the sink's JSONL file incrementally; safe to call from several threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._messages: list[SinkMessage] = []
        self._lock = threading.Lock()

    def _read_new(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except FileNotFoundError:
            return
        end = chunk.rfind(b"\n") + 1  # a half-written last line waits for the next read
        for line in chunk[:end].splitlines():
            r = json.loads(line)
            self._messages.append(SinkMessage(
                seq=r["seq"], received_at=r["received_at"], mail_from=r["mail_from"],
                rcpt_tos=tuple(r["rcpt_tos"]), headers=tuple((k, v) for k, v in r["headers"]),
                job=r["job"], step=r["step"], subject=r["subject"], size=r["size"],
            ))
        self._offset += end

    def messages(self, since: int = 0) -> list[SinkMessage]:
        """All messages received so far (from index ``since``)."""
        with self._lock:
            self._read_new()
            return self._messages[since:]

    def wait_for(self, predicate: Callable[[list[SinkMessage]], bool], timeout: float,
                 since: int = 0) -> list[SinkMessage]:
        """Poll until ``predicate(messages)`` holds; raise TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.messages(since)
            if predicate(msgs):
                return msgs
            if time.monotonic() >= deadline:
                raise TimeoutError(f"SMTP sink: condition not met within {timeout} s; "
                                   f"{len(msgs)} message(s) received")
            time.sleep(0.01)


class SmtpSink(Service):
    """``python -m harness.services.smtp_server`` in a child process."""

    name = "smtp"
    port_option = "the SMTP sink port"

    def __init__(self, workdir: Path, **kw: object) -> None:
        super().__init__(workdir, **kw)  # type: ignore[arg-type]
        self.jsonl = workdir / "smtp-messages.jsonl"
        self.log = MessageLog(self.jsonl)

    def prepare(self) -> None:
        """A new sink records afresh; a restarted one (``stopped()``) appends to the same file,
        so readers keep their place."""
        if self._launches == 0:
            self.jsonl.unlink(missing_ok=True)
            self.log = MessageLog(self.jsonl)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "harness.services.smtp_server", "--host", self.host,
                "--port", str(self.port), "--jsonl", str(self.jsonl)]

    def ready(self) -> bool:
        return smtp_banner(self.host, self.port)

    def messages(self, since: int = 0) -> list[SinkMessage]:
        return self.log.messages(since)
