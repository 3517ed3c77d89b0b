"""The node agent.

Process topology (every node a process of the service's machine):
``python -m shared.agent --cluster-key K --node-id N --workdir DIR [--address A] [--heartbeat-s S]``
with storage through BATCHAI_STORAGE_CONNECTION_STRING, local shared directories under
BATCHAI_STATE_DIR, and BATCHAI_ON_AZURE=1 to poll Scheduled Events (see shared.config.Settings).
The node's documents come from the service's node API at BATCHAI_NODE_SERVICE_URL (trusting
BATCHAI_NODE_CA_FILE), with the node token in ``DIR/node-token``; messages are verified with
BATCHAI_MESSAGE_PUBLIC_KEY. BATCHAI_NODE_GPUS declares GPUs the agent cannot see (a machine's
config key ``gpus`` wins over it); unset, the GPUs are what nvidia-smi lists.

Machine (a VM, or an emulator machine): ``python -m shared.agent --config /etc/batchai/agent.json``
(see shared.agent.config): the node id is the host name (the VM's computer name), the address is
the private IP IMDS reports, storage is reached with scoped SAS from the node credentials API
(no account key on the machine), Scheduled Events are polled at the config's IMDS, cluster volumes
are checked and job volumes mounted for real. Messages are verified with the key the credentials
name; Key Vault references are read with the machine's identity. Jobs cannot reach the machine's
IMDS or the node API (see shared.agent.firewall).

A machine that joined a bring-your-own cluster (`batchai node join`): ``python -m shared.agent
--joined <install dir>/agent.json`` (see shared.agent.joined): its node token, no IMDS, scoped SAS.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from shared import telemetry
from shared.adapters import key_vault
from shared.agent.agent import Agent, AgentOptions
from shared.agent.config import AgentConfig
from shared.agent.environment import SecretReader
from shared.agent.imds import ImdsClient
from shared.agent.isolation import machine
from shared.agent.joined import REFUSED_EXIT, JoinedConfig, joined_options
from shared.agent.machine_mounts import MachineMounter, run_command
from shared.agent.node_api import NodeApi, NodeApiRefused
from shared.agent.node_storage import KeyedStorage
from shared.agent.preemption import IMDS_SCHEDULED_EVENTS
from shared.agent.retry import with_retries
from shared.agent.scoped_storage import ScopedStorage
from shared.config import Settings

NODE_TOKEN = "node-token"  # in the working directory of a process node (the local provider writes it)
SSH_PORT = 22  # machines run sshd (cloud-init nodes, as Batch AI's were): remote login and mpirun reach it


def vault_reader(imds: ImdsClient, client_id: str, hosts: Callable[[], list[str]]) -> SecretReader:
    """Key Vault secrets read with the machine's identity (the user-assigned one the config names, else
    its system identity), only from the vaults the service allows."""
    def read(secret_url: str) -> str:
        def once() -> str:
            return key_vault.read_secret(secret_url, imds.token(key_vault.RESOURCE, client_id), hosts())
        return with_retries(once, f"reading {secret_url}", deadline_s=60.0)
    return read


def machine_options(config: AgentConfig, heartbeat_s: float, settings: Settings) -> AgentOptions:
    node_id = socket.gethostname()
    imds = ImdsClient(config.imds_url)
    address = with_retries(imds.private_ip, "asking IMDS for the private IP")
    vm_name = with_retries(imds.vm_name, "asking IMDS for the VM name")
    api = NodeApi(config.service_url, config.cluster_key, node_id, lambda: imds.token(config.token_resource),
                  lambda: imds.forget_token(config.token_resource))
    storage = ScopedStorage(api, config.storage_endpoints)
    return AgentOptions(
        storage=storage, api=api, message_key=storage.message_key,
        read_secret=vault_reader(imds, config.identity_client_id, storage.key_vault_hosts),
        cluster_key=config.cluster_key, node_id=node_id,
        workdir=config.workdir, state_dir=config.workdir / "state", address=address, heartbeat_s=heartbeat_s,
        ssh_port=SSH_PORT, mount_root=config.mount_root,
        machine_mounts=MachineMounter(run_command, config.storage_endpoints, config.file_server_ips),
        scheduled_events_url=imds.scheduled_events_url, vm_name=vm_name,
        declared_gpus=config.gpus if config.gpus is not None else settings.node_gpus,
        isolation=machine([config.imds_url, config.service_url]),
        poll_max_s=settings.agent_poll_max_s, poll_min_s=min(settings.agent_poll_min_s, settings.agent_poll_max_s))


def process_options(args: argparse.Namespace, settings: Settings) -> AgentOptions:
    workdir = args.workdir.resolve()
    if not settings.azure.node_service_url:
        raise SystemExit("BATCHAI_NODE_SERVICE_URL is not set: a node fetches its tasks from the service")
    if not settings.message_public_key:
        raise SystemExit("BATCHAI_MESSAGE_PUBLIC_KEY is not set: a node acts only on messages it can verify")
    try:
        token = (workdir / NODE_TOKEN).read_text().strip()
    except FileNotFoundError:
        raise SystemExit(f"{workdir / NODE_TOKEN} is missing: the node token proves this node to the service") from None
    api = NodeApi(settings.azure.node_service_url, args.cluster_key, args.node_id, lambda: token,
                  ca_file=settings.azure.node_ca_file)
    return AgentOptions(
        storage=KeyedStorage(settings.storage_connection_string, args.cluster_key, args.node_id),
        api=api, message_key=lambda: settings.message_public_key,
        cluster_key=args.cluster_key, node_id=args.node_id, workdir=workdir,
        state_dir=settings.state_dir, address=args.address, heartbeat_s=args.heartbeat_s,
        scheduled_events_url=IMDS_SCHEDULED_EVENTS if settings.on_azure else None, declared_gpus=settings.node_gpus,
        poll_max_s=settings.agent_poll_max_s, poll_min_s=min(settings.agent_poll_min_s, settings.agent_poll_max_s))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.agent", description="batchai node agent")
    parser.add_argument("--config", type=Path, help="a machine's agent config (replaces the next four)")
    parser.add_argument("--joined", type=Path, help="the agent config of a machine that joined a cluster")
    parser.add_argument("--cluster-key")
    parser.add_argument("--node-id")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--heartbeat-s", type=float, default=2.0)
    args = parser.parse_args(argv)
    if args.config is None and args.joined is None and not (args.cluster_key and args.node_id and args.workdir):
        parser.error("either --config, --joined, or --cluster-key, --node-id and --workdir")
    joined = JoinedConfig.load(args.joined) if args.joined else None
    node_id = socket.gethostname() if args.config else joined.node_id if joined else args.node_id
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s {node_id} %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    telemetry.configure(f"agent-{node_id}")
    settings = Settings.from_env()
    if joined:
        options = joined_options(joined, args.heartbeat_s, settings)
    elif args.config:
        options = machine_options(AgentConfig.load(args.config), args.heartbeat_s, settings)
    else:
        options = process_options(args, settings)
    agent = Agent(options)
    agent.install_signals()
    try:
        return agent.run()
    except NodeApiRefused as error:
        if joined is None or error.status != 401:
            raise
        logging.getLogger("batchai.agent").error("%s", error)
        return REFUSED_EXIT


if __name__ == "__main__":
    sys.exit(main())
