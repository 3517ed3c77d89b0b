"""The HTTP API: the Batch AI 2018-05-01 routes on FastAPI, served through AsgiFunctionApp."""

from __future__ import annotations

from fastapi import FastAPI

api = FastAPI(title="batchai", version="2018-05-01", docs_url=None, redoc_url=None)


@api.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}
