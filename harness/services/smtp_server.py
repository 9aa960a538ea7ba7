"""The SMTP sink program: a real aiosmtpd server that records every message it accepts.

Run as ``python -m harness.services.smtp_server --host 127.0.0.1 --port N --jsonl FILE``.
Each accepted message becomes one JSON line (envelope, all headers, the ``X-Chaos-Job`` and
``X-Chaos-Step`` tags, time received), written and flushed *before* the server answers 250, so
a sender that got its 250 will always find its message in the file. A client that drops the
connection mid-DATA leaves no line and does not disturb other sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path
from typing import IO, Any

from aiosmtpd.smtp import SMTP, Envelope, Session

UNLIMITED_COMMANDS = 10**9  # a worker may send many messages over one long session


class RecordingHandler:
    """aiosmtpd handler: one JSON line per accepted message."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.count = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
        record: dict[str, Any] = {
            "seq": self.count,
            "received_at": time.time(),
            "peer": list(session.peer) if session.peer else None,
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "headers": [[k, str(v)] for k, v in headers.items()],
            "job": headers.get("X-Chaos-Job"),
            "step": headers.get("X-Chaos-Step"),
            "subject": headers.get("Subject"),
            "size": len(raw),
        }
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()
        self.count += 1
        return "250 Message accepted for delivery"


async def serve(host: str, port: int, jsonl: Path) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with open(jsonl, "a", encoding="utf-8") as out:
        handler = RecordingHandler(out)
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="jobchaos-sink", decode_data=False,
                         command_call_limit=UNLIMITED_COMMANDS, enable_SMTPUTF8=True),
            host=host, port=port, reuse_address=True,
        )
        print(f"smtp sink listening on {host}:{port}, recording to {jsonl}", flush=True)
        async with server:
            await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.services.smtp_server",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--jsonl", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.host, args.port, args.jsonl))
    except OSError as exc:
        print(f"smtp sink: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
