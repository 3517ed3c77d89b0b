"""`python -m shared.localstack up|down|status [--state-dir .batchai]`: the local stack from a shell."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shared.localstack.endpoint import endpoint_path
from shared.localstack.stack import read_endpoint, stack_status, start_stack, stop_stack


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m shared.localstack", description=__doc__)
    p.add_argument("command", choices=("up", "down", "status"))
    p.add_argument("--state-dir", type=Path, default=Path(".batchai"))
    a = p.parse_args(argv)
    state = a.state_dir.resolve()
    if a.command == "up":
        endpoint = start_stack(state)
        shown = {k: v for k, v in endpoint.to_dict().items() if k not in ("token", "notices")}
        print(json.dumps(shown, indent=2))
        print(f"endpoint file (with the API token): {endpoint_path(state)}")
        for notice in endpoint.notices:
            print(f"warning: {notice}", file=sys.stderr)
        return 0
    if a.command == "down":
        report = stop_stack(state)
        killed = sorted(name for name, clean in report.items() if not clean)
        print(f"local stack stopped (state kept in {state})"
              + (f"; had to kill {', '.join(killed)} (did not exit on SIGTERM)" if killed else ""))
        return 0
    status = stack_status(state)
    endpoint = read_endpoint(state)
    print(json.dumps({"running": status["running"], "processes": status["processes"],
                      "url": endpoint.url if endpoint else None, "state_dir": str(state)}, indent=2))
    return 0 if status["running"] else 1


if __name__ == "__main__":
    sys.exit(main())
