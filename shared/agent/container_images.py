"""The image of a job's container: its reference, its registry credentials, and getting it onto the node.

An image already present on the engine is used as it is (nothing is pulled); otherwise it is pulled
from `imageSourceRegistry.serverUrl` with the job's credentials. A password given as a Key Vault
secret reference is read through the node's `SecretReader` (the agent reads every reference of a
task before it starts, see `environment.resolve_secrets`; this covers a runtime used on its own).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import docker
from docker.errors import APIError, ImageNotFound
from docker.models.images import Image

from shared.agent.environment import SecretReader
from shared.agent.runtime import TaskStartError


def image_reference(registry: dict[str, Any]) -> str:
    """`image`, prefixed with the registry host of `serverUrl` unless it already names it."""
    image = registry.get("image") or ""
    if not image:
        raise TaskStartError("InvalidContainerSettings", "containerSettings.imageSourceRegistry.image is required")
    server = registry.get("serverUrl")
    if not server:
        return image
    host = urlparse(server if "//" in server else f"//{server}").netloc or server.rstrip("/")
    return image if image.startswith(f"{host}/") else f"{host}/{image}"


def registry_auth(registry: dict[str, Any], read_secret: SecretReader | None) -> dict[str, str] | None:
    """The docker auth_config for pulling, or None for an anonymous pull."""
    credentials = registry.get("credentials")
    if not credentials:
        return None
    username = credentials.get("username")
    password = credentials.get("password")
    reference = credentials.get("passwordSecretReference")
    if password is None and reference:
        secret_url = reference.get("secretUrl", "")
        if read_secret is None:
            raise TaskStartError(
                "RegistryCredentialsUnavailable",
                f"the registry password is the Key Vault secret {secret_url} and this node has no Key Vault reader",
            )
        try:
            password = read_secret(secret_url)
        except TaskStartError:
            raise
        except Exception as e:  # any failure of the reader is a clear, permanent start error of this task
            raise TaskStartError(
                "RegistryCredentialsUnavailable", f"cannot read the registry password from {secret_url}: {e}"
            ) from e
    if password is None:
        raise TaskStartError(
            "InvalidContainerSettings", "registry credentials need a password or passwordSecretReference"
        )
    auth = {"username": username or "", "password": password}
    if registry.get("serverUrl"):
        auth["serveraddress"] = registry["serverUrl"]
    return auth


def ensure_image(client: docker.DockerClient, registry: dict[str, Any], read_secret: SecretReader | None) -> Image:
    """The local image if present, else pulled with the job's credentials."""
    reference = image_reference(registry)
    try:
        return client.images.get(reference)
    except ImageNotFound:
        pass
    auth = registry_auth(registry, read_secret)
    try:
        return client.images.pull(reference, auth_config=auth)
    except (APIError, ImageNotFound) as e:
        raise TaskStartError(
            "ImagePullFailed", f"image {reference} is not on this node and cannot be pulled: {e}"
        ) from e
