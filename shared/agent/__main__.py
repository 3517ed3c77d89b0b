"""``python -m shared.agent --cluster-key K --node-id N --workdir DIR [--address A] [--heartbeat-s S]``

Storage: BATCHAI_STORAGE_CONNECTION_STRING; local shared directories: BATCHAI_STATE_DIR;
BATCHAI_ON_AZURE=1 starts the Scheduled Events poller (see shared.config.Settings).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from shared.agent.agent import Agent, AgentOptions
from shared.config import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.agent", description="batchai node agent")
    parser.add_argument("--cluster-key", required=True)
    parser.add_argument("--node-id", required=True)
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--heartbeat-s", type=float, default=2.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s {args.node_id} %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = Settings.from_env()
    agent = Agent(AgentOptions(
        conn=settings.storage_connection_string, cluster_key=args.cluster_key, node_id=args.node_id,
        workdir=args.workdir.resolve(), state_dir=settings.state_dir, address=args.address,
        heartbeat_s=args.heartbeat_s, on_azure=settings.on_azure,
        poll_max_s=settings.agent_poll_max_s, poll_min_s=min(settings.agent_poll_min_s, settings.agent_poll_max_s)))
    agent.install_signals()
    return agent.run()


if __name__ == "__main__":
    sys.exit(main())
