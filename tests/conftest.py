"""Shared fixtures: a real Azurite per test session, with its own ports and directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.adapters import secret_box, storage
from shared.localstack.azurite import Azurite, start_azurite
from tests.polling import wait_until


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
def api_endpoint(storage_conn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The HTTP functions of function_app.py served over https on loopback, in this process.

    Yields url, token, ca_file, subscription_id and resource_group, as endpoint.json does.
    """
    import hashlib
    import secrets
    import threading

    import uvicorn

    from shared.localhost.http import HttpFront, http_function
    from shared.localhost.loader import by_trigger, load_functions
    from shared.localstack.azurite import free_port
    from shared.localstack.tls import ensure_tls

    token = secrets.token_urlsafe(24)
    os.environ["BATCHAI_API_TOKEN_SHA256"] = hashlib.sha256(token.encode()).hexdigest()
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
    yield {"url": f"https://127.0.0.1:{port}", "token": token, "ca_file": str(tls.ca_file),
           "subscription_id": "00000000-0000-0000-0000-000000000000", "resource_group": "demo"}
    server.should_exit = True
    thread.join(timeout=10)
    import function_app
    # The API has no shutdown handlers; clearing the flag keeps AsgiFunctionApp.__del__ from starting an
    # event loop while the interpreter exits.
    function_app.app.startup_task_done = False


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
