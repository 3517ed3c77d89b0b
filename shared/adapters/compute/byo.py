"""The provider of bring-your-own clusters: their nodes are machines their owners run, joined with a join
token (`batchai node join`); it never starts or deletes a machine.

An instance is a node credential a join token was exchanged for (`node_tokens.joined`): running while
its join token holds, failed (with why) once the token was revoked or expired, so the reconciler
handles the node as lost. Removing an instance retires its node credential: the machine's next request
to the service is refused (401, saying why), and it must join again to come back.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from shared.adapters import join_tokens, node_tokens
from shared.adapters.compute.port import ClusterSpec, Instance


class ByoProvider:
    name = "bringYourOwn"

    def __init__(self, conn: str) -> None:
        self.conn = conn

    def reconcile(self, spec: ClusterSpec, target: int, remove: Sequence[str] = ()) -> None:
        for node_id in remove:  # `target` is ignored: machines join, none is started here
            node_tokens.retire(self.conn, spec.cluster_key, node_id)

    def list_instances(self, cluster_key: str) -> list[Instance]:
        now = datetime.now(UTC)
        found = []
        for row in node_tokens.joined(self.conn, cluster_key):
            if row.get("retiredAt"):
                continue  # removed: gone until it joins again
            why = join_tokens.valid(self.conn, cluster_key, str(row["joinToken"]), now)
            found.append(Instance(row["RowKey"], "failed" if why else "running", str(row.get("address") or ""),
                                  why or ""))
        return found

    def delete_cluster(self, cluster_key: str) -> None:
        for row in node_tokens.joined(self.conn, cluster_key):
            node_tokens.revoke(self.conn, cluster_key, row["RowKey"])
        for token in join_tokens.list_tokens(self.conn, cluster_key):
            join_tokens.revoke(self.conn, cluster_key, token.name)
