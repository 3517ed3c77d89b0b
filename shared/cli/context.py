"""Where the CLI finds the service: the endpoint file, the SDK client built from it, and the defaults it gives.

The endpoint file is `<state-dir>/local/endpoint.json` (written by the local stack) unless `--endpoint`
or BATCHAI_ENDPOINT_FILE names another; it holds url, token, ca_file, subscription_id, resource_group
and storage_connection_string.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.core.credentials import AccessToken
from azure.mgmt.batchai import BatchAI

ENDPOINT_ENV = "BATCHAI_ENDPOINT_FILE"
STATE_DIR_ENV = "BATCHAI_STATE_DIR"
DEFAULT_STATE_DIR = ".batchai"
TOKEN_LIFETIME_S = 10 * 365 * 24 * 3600


class CliError(Exception):
    """A failure the user can act on: printed without a traceback, exits with `exit_code`."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class StaticTokenCredential:
    """An azure-core TokenCredential for the service's API token: valid far into the future."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + TOKEN_LIFETIME_S)


def state_dir_path(state_dir: str | None) -> Path:
    return Path(state_dir or os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)


def endpoint_file_path(endpoint: str | None, state_dir: str | None) -> Path:
    if endpoint:
        return Path(endpoint)
    if os.environ.get(ENDPOINT_ENV):
        return Path(os.environ[ENDPOINT_ENV])
    return state_dir_path(state_dir) / "local" / "endpoint.json"


def load_endpoint(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CliError(f"no endpoint file at {path}: start the local stack (`batchai stack up`) "
                       f"or pass --endpoint FILE / set {ENDPOINT_ENV}") from None
    except (OSError, json.JSONDecodeError) as e:
        raise CliError(f"cannot read endpoint file {path}: {e}") from None
    missing = [k for k in ("url", "token") if not data.get(k)]
    if missing:
        raise CliError(f"endpoint file {path} lacks {', '.join(missing)}")
    return data


def as_mapping(endpoint: Any) -> dict[str, Any]:
    """An endpoint as a dict, whether the stack hands back a dict or a dataclass (None: empty)."""
    if endpoint is None:
        return {}
    if isinstance(endpoint, dict):
        return endpoint
    if dataclasses.is_dataclass(endpoint) and not isinstance(endpoint, type):
        return dataclasses.asdict(endpoint)
    return dict(vars(endpoint))


def make_client(endpoint: dict[str, Any], subscription_id: str) -> BatchAI:
    verify: str | bool = endpoint.get("ca_file") or True
    return BatchAI(StaticTokenCredential(endpoint["token"]), subscription_id, base_url=endpoint["url"],
                   connection_verify=verify, polling_interval=1)


@dataclass
class Session:
    """The global options of one CLI invocation; the endpoint and client are loaded on first use."""

    endpoint_option: str | None = None
    state_dir_option: str | None = None
    subscription_option: str | None = None
    resource_group_option: str | None = None
    output: str = "table"
    _endpoint: dict[str, Any] | None = field(default=None, repr=False)
    _client: BatchAI | None = field(default=None, repr=False)

    @property
    def state_dir(self) -> Path:
        return state_dir_path(self.state_dir_option)

    @property
    def stack_state_dir(self) -> Path:
        """The local stack's state directory: --state-dir, else the one holding the endpoint file."""
        if self.state_dir_option or os.environ.get(STATE_DIR_ENV):
            return self.state_dir
        path = self.endpoint_path
        return path.parent.parent if path.parent.name == "local" else self.state_dir

    @property
    def endpoint_path(self) -> Path:
        return endpoint_file_path(self.endpoint_option, self.state_dir_option)

    @property
    def endpoint(self) -> dict[str, Any]:
        if self._endpoint is None:
            self._endpoint = load_endpoint(self.endpoint_path)
        return self._endpoint

    @property
    def subscription_id(self) -> str:
        sub = self.subscription_option or self.endpoint.get("subscription_id")
        if not sub:
            raise CliError("no subscription: pass --subscription or add subscription_id to the endpoint file")
        return str(sub)

    def resource_group(self, override: str | None = None) -> str:
        rg = override or self.resource_group_option or self.endpoint.get("resource_group")
        if not rg:
            raise CliError("no resource group: pass --resource-group or add resource_group to the endpoint file")
        return str(rg)

    @property
    def client(self) -> BatchAI:
        if self._client is None:
            self._client = make_client(self.endpoint, self.subscription_id)
        return self._client

    def arm_prefix(self, resource_group: str) -> str:
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{resource_group}/providers/Microsoft.BatchAI"
