"""Runtime settings, read once from the environment. Owns every BATCHAI_* variable name."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def azurite_connection_string(host: str = "127.0.0.1", blob: int = 10000, queue: int = 10001,
                              table: int = 10002) -> str:
    base = f"http://{host}"
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={base}:{blob}/{AZURITE_ACCOUNT};QueueEndpoint={base}:{queue}/{AZURITE_ACCOUNT};"
        f"TableEndpoint={base}:{table}/{AZURITE_ACCOUNT};"
    )


@dataclass(frozen=True)
class Settings:
    storage_connection_string: str
    state_dir: Path
    provider: str
    idle_timeout_s: float
    max_retries: int
    token_sha256: str | None
    default_location: str

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            storage_connection_string=env.get("BATCHAI_STORAGE_CONNECTION_STRING")
            or env.get("AzureWebJobsStorage")
            or azurite_connection_string(),
            state_dir=Path(env.get("BATCHAI_STATE_DIR", ".batchai")).resolve(),
            provider=env.get("BATCHAI_PROVIDER", "local"),
            idle_timeout_s=float(env.get("BATCHAI_IDLE_TIMEOUT_S", "300")),
            max_retries=int(env.get("BATCHAI_MAX_RETRIES", "3")),
            token_sha256=env.get("BATCHAI_API_TOKEN_SHA256") or None,
            default_location=env.get("BATCHAI_LOCATION", "local"),
        )
