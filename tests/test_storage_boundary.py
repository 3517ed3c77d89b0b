"""No module under shared/services reaches a Tables, Queue or Blob client: services use the storage port."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parents[1] / "shared" / "services"
SDK_MODULES = ("azure.data.tables", "azure.storage")
CLIENT_FACTORIES = {"table", "queue", "container", "table_service", "queue_service", "blob_service",
                    "ensure_queue", "ensure_all"}
CLIENT_METHODS = {
    "get_entity", "query_entities", "list_entities", "create_entity", "upsert_entity", "update_entity",
    "delete_entity", "submit_transaction", "create_table_if_not_exists",
    "send_message", "receive_messages", "delete_message", "update_message", "get_queue_properties",
    "create_queue", "delete_queue", "list_blobs", "walk_blobs", "upload_blob", "download_blob", "delete_blob",
    "get_blob_client", "get_container_client", "get_blob_properties", "create_container", "delete_container",
}


def _own_modules(tree: ast.Module) -> set[str]:
    """The names a module binds to modules of this project (their functions are not SDK calls)."""
    return {alias.asname or alias.name for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("shared")
            for alias in node.names}


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    own = _own_modules(tree) - {"storage"}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"imports {a.name}" for a in node.names if a.name.startswith(SDK_MODULES)]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(SDK_MODULES):
            found.append(f"imports from {node.module}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name, owner = node.func.attr, node.func.value
            if name in CLIENT_METHODS and not (isinstance(owner, ast.Name) and owner.id in own):
                found.append(f"calls .{name}() (line {node.lineno})")
            elif name in CLIENT_FACTORIES and isinstance(owner, ast.Name) and owner.id == "storage":
                found.append(f"calls storage.{name}() (line {node.lineno})")
    return found


@pytest.mark.parametrize("path", sorted(SERVICES.glob("*.py")), ids=lambda p: p.name)
def test_a_service_reaches_storage_only_through_the_port(path: Path) -> None:
    assert _violations(path) == []


def test_the_check_sees_a_direct_client(tmp_path: Path) -> None:
    text = ("from azure.data.tables import UpdateMode\nfrom shared.adapters import storage\n"
            "storage.table(conn, 'jobs').upsert_entity({})\n")
    probe = tmp_path / "probe.py"
    probe.write_text(text)
    assert _violations(probe) == ["imports from azure.data.tables", "calls .upsert_entity() (line 3)",
                                  "calls storage.table() (line 3)"]
