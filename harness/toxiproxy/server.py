"""Run the embedded Toxiproxy server: API, optional config file, signals."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .addresses import join_host_port
from .api import VERSION, Api
from .errors import ApiError
from .httpserver import Request, start_http_server

log = logging.getLogger("harness.toxiproxy")
READY_PREFIX = "toxiproxy: API listening on "


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Flags of the real server, with `-flag` and `--flag` spellings both accepted."""
    parser = argparse.ArgumentParser(
        prog="python -m harness.toxiproxy",
        description="Toxiproxy v2 compatible fault proxy (jobchaos embedded server).",
    )
    parser.add_argument("-host", "--host", default="localhost", help="API host")
    parser.add_argument("-port", "--port", type=int, default=8474, help="API port (0: pick)")
    parser.add_argument("-config", "--config", type=Path, help="JSON file shaped like /populate")
    parser.add_argument("-seed", "--seed", type=int, help="seed for jitter, toxicity, slicing")
    parser.add_argument("-version", "--version", action="store_true", help="print the version")
    parser.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    return parser.parse_args(argv)


async def load_config(api: Api, path: Path) -> None:
    """Populate from a file; errors are logged, not fatal (as the real server)."""
    try:
        body = path.read_bytes()
    except OSError as exc:
        log.error("toxiproxy: cannot read config %s: %s", path, exc)
        return
    response = await api.handle(Request("POST", "/populate", {}, body))
    if response.status != 201:
        log.error("toxiproxy: populate from %s failed: %s", path, response.body.decode())


async def serve(
    host: str,
    port: int,
    *,
    seed: int | None = None,
    config: Path | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (or cancellation); on_ready gets the API URL."""
    api = Api(seed=seed)
    if config is not None:
        await load_config(api, config)
    try:
        server = await start_http_server(api.handle, host, port)
    except ApiError as exc:
        raise SystemExit(f"toxiproxy: cannot start the API on {host}:{port}: {exc.message}") from None
    bound = server.sockets[0].getsockname()
    url = f"http://{join_host_port(str(bound[0]), int(bound[1]))}"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if on_ready is not None:
        on_ready(url)
    try:
        await stop.wait()
    finally:
        server.close()
        await api.close()


def _print_ready(url: str) -> None:
    print(f"{READY_PREFIX}{url}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.version:
        print(f"toxiproxy-server version {VERSION} (jobchaos embedded)")
        return 0
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    if config_missing(args.config):
        log.error("toxiproxy: config file %s not found; starting without proxies", args.config)
    asyncio.run(
        serve(args.host, args.port, seed=args.seed, config=args.config, on_ready=_print_ready)
    )
    return 0


def config_missing(path: Path | None) -> bool:
    return path is not None and not path.exists()


def dump_config(proxies: Sequence[dict[str, object]]) -> str:
    """The JSON text of a config file for proxies (helper for tests and docs)."""
    return json.dumps(list(proxies), indent=2)
