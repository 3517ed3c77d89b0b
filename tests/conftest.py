"""Shared fixtures: a real Azurite per test session, with its own ports and directory."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.adapters import secret_box, storage
from shared.emulator.issuer import Issuer, IssuerServer
from shared.localstack.azurite import Azurite, start_azurite
from tests.identity.helpers import running_issuer
from tests.polling import wait_until

# Most tests share the local stack's default subscription, and the service counts every cluster of a
# subscription against its quota of clusters (20 unless set): the session allows more. Tests of the
# quotas use subscriptions of their own and set the limits they test. The local stack started by
# a test inherits this environment.
os.environ.setdefault("BATCHAI_QUOTA_CLUSTERS", "1000")


def _on_machines(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    return "cloud_stack" in item.fixturenames or (callspec is not None and callspec.params.get("stack") == "machines")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The machine topology's tests run last: its stack and machines live for the rest of the session,
    and every test after them would share the host with their systemd and agents."""
    items.sort(key=_on_machines)  # stable: each group keeps its order


def own_azurite(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[str]:
    """The connection string of an Azurite of its own, with every table, queue and container made, stopped
    after (for fixtures whose tests must not share storage with other tests' timers and leftovers)."""
    location = tmp_path_factory.mktemp(name)
    server = start_azurite(location, log=Path(location) / "azurite.log")
    try:
        storage.ensure_all(server.connection_string)
        yield server.connection_string
    finally:
        server.stop()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    location = tmp_path_factory.mktemp("azurite")
    server = start_azurite(location, log=Path(location) / "azurite.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def storage_conn(azurite: Azurite) -> str:
    conn = azurite.connection_string
    storage.ensure_all(conn)
    os.environ["BATCHAI_STORAGE_CONNECTION_STRING"] = conn
    os.environ.setdefault("BATCHAI_SECRETS_KEY", secret_box.new_key())  # the services seal secrets with it
    return conn


@pytest.fixture(scope="session")
def issuer_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IssuerServer]:
    """The session's token issuer (the local stack's kind: discovery document and keys over https), trusted
    by the in-process API for callers' tokens and by the node routes for nodes' tokens."""
    with running_issuer(tmp_path_factory.mktemp("issuer")) as (server, _):
        yield server


@pytest.fixture(scope="session")
def api_issuer(issuer_server: IssuerServer) -> Issuer:
    return issuer_server.issuer


@pytest.fixture(scope="session")
def api_endpoint(storage_conn: str, issuer_server: IssuerServer, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[dict[str, str]]:
    """The HTTP functions of function_app.py served over https on loopback, in this process, trusting
    `api_issuer`'s tokens for the local stack's audience, with its owner principal as the service's owner,
    and the deletions that DELETEs record advanced as the reconcile timer does (`deletion_ticks`).

    Yields url, token (the owner's), ca_file, subscription_id, resource_group and issuer, as endpoint.json does.
    """
    import uvicorn

    from shared.localhost.http import HttpFront, http_function
    from shared.localhost.loader import by_trigger, load_functions
    from shared.localstack import token as local_tokens
    from shared.localstack.azurite import free_port
    from shared.localstack.tls import ensure_tls

    issuer = issuer_server.issuer
    os.environ.update(local_tokens.api_settings(issuer.url))
    os.environ["BATCHAI_TOKEN_ISSUER"] = issuer.url
    os.environ["BATCHAI_TOKEN_ISSUER_CA_FILE"] = str(issuer_server.tls.ca_file)
    token = local_tokens.principal_token(issuer, local_tokens.OWNER_NAME, lifetime_s=24 * 3600)
    state = tmp_path_factory.mktemp("state")
    os.environ["BATCHAI_STATE_DIR"] = str(state)
    tls = ensure_tls(state / "tls")
    front = HttpFront([http_function(f) for f in by_trigger(load_functions(), "httpTrigger")], route_prefix="")
    port = free_port()
    config = uvicorn.Config(front, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
                            ssl_certfile=str(tls.cert_file), ssl_keyfile=str(tls.key_file))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 20, "the API server to start", interval=0.02)
    ticks = deletion_ticks()
    yield {"url": f"https://127.0.0.1:{port}", "token": token, "ca_file": str(tls.ca_file),
           "subscription_id": "00000000-0000-0000-0000-000000000000", "resource_group": "demo",
           "issuer": issuer.url}
    server.should_exit = True
    thread.join(timeout=10)
    ticks.set()
    import function_app
    # The API has no shutdown handlers; clearing the flag keeps AsgiFunctionApp.__del__ from starting an
    # event loop while the interpreter exits.
    function_app.app.startup_task_done = False


def deletion_ticks(interval_s: float = 0.2) -> threading.Event:
    """The reconcile timer's deletion step (`removal.reconcile_all`) on a thread, for the in-process API
    (no timer host runs there; the cluster reconciler would start nodes, so it does not run). Set the
    returned event to stop it. A failed tick is logged and retried, as the host does."""
    from datetime import UTC, datetime

    from shared.config import Settings
    from shared.services import removal

    settings, stop = Settings.from_env(), threading.Event()

    def run() -> None:
        while not stop.wait(interval_s):
            try:
                removal.reconcile_all(settings, datetime.now(UTC))
            except Exception:
                logging.getLogger("tests.deletions").exception("deletion tick failed")

    threading.Thread(target=run, name="deletion-ticks", daemon=True).start()
    return stop


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """The whole local stack (its own Azurite, the trigger host running function_app.py as a process)
    in a temp state directory, on free ports. Yields the endpoint file's contents (url, token, ca_file,
    subscription_id, resource_group, storage_connection_string, pids, ports)."""
    from shared.localstack.stack import start_stack, stop_stack

    state = tmp_path_factory.mktemp("stack")
    endpoint = start_stack(state, fixed_ports=False)
    try:
        yield {**endpoint.to_dict(), "state_dir": str(state)}
    finally:
        stop_stack(state)
