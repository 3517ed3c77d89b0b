"""`python -m shared.localhost --app function_app --port N --state-dir DIR`: the local trigger host.

Logs go to stderr and to `<state-dir>/logs/host.log`; SIGTERM or SIGINT stops it gracefully: no new
work, running functions get the shutdown grace, then the process exits. Threads still blocked in a
storage call then (a function past the grace, a poll of storage that is down) are abandoned, not
waited for: what they held comes back to its queue when its lease ends.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path

from shared.localhost.blobs import DEFAULT_SCAN_INTERVAL_S
from shared.localhost.host import Host, HostOptions


def _parse(argv: list[str] | None) -> tuple[HostOptions, bool]:
    p = argparse.ArgumentParser(prog="python -m shared.localhost", description=__doc__)
    p.add_argument("--app", default="function_app", help="module:attribute or module of the FunctionApp")
    p.add_argument("--port", type=int, default=7071, help="HTTPS port (0: any free port)")
    p.add_argument("--bind", default="127.0.0.1", help="the address HTTPS listens on")
    p.add_argument("--state-dir", type=Path, default=Path(".batchai"))
    p.add_argument("--host-json", type=Path, default=None, help="default: host.json beside the app module")
    p.add_argument("--host-id", default=None, help="names this host's receipts and timer status")
    p.add_argument("--blob-scan-interval", type=float, default=DEFAULT_SCAN_INTERVAL_S,
                   help="seconds between blob container scans")
    p.add_argument("--queue-lease", type=float, default=600.0,
                   help="seconds a received message stays invisible (renewed halfway while its function runs)")
    p.add_argument("--max-concurrency", type=int, default=16, help="functions running at once")
    p.add_argument("--shutdown-grace", type=float, default=10.0)
    p.add_argument("--no-stderr-log", action="store_true", help="log only to <state-dir>/logs/host.log")
    a = p.parse_args(argv)
    module, _, attribute = a.app.partition(":")
    return HostOptions(app_module=module, attribute=attribute or "app", port=a.port, bind=a.bind,
                       state_dir=a.state_dir.resolve(),
                       host_json=a.host_json.resolve() if a.host_json else None, host_id=a.host_id,
                       blob_scan_interval_s=a.blob_scan_interval, queue_lease_s=a.queue_lease,
                       max_concurrency=a.max_concurrency, shutdown_grace_s=a.shutdown_grace), not a.no_stderr_log


def _configure_logging(state_dir: Path, to_stderr: bool) -> None:
    (state_dir / "logs").mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    handlers: list[logging.Handler] = [RotatingFileHandler(state_dir / "logs" / "host.log", maxBytes=10 << 20,
                                                           backupCount=3)]
    if to_stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(fmt)
        root.addHandler(handler)
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDKs log every request at INFO


async def _main(options: HostOptions) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await Host(options).serve(stop)


def main(argv: list[str] | None = None) -> int:
    options, to_stderr = _parse(argv)
    _configure_logging(options.state_dir, to_stderr)
    sys.path.insert(0, str(Path.cwd()))
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_main(options))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()  # unlike asyncio.run, does not wait for threads blocked in storage calls
    return 0


if __name__ == "__main__":
    code = main()
    logging.shutdown()
    os._exit(code)  # the threads `loop.close` left are not joined either
