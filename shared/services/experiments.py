"""Experiments: create, get, list; deletion is `removal`'s. The only writer of experiment documents."""

from __future__ import annotations

from shared.adapters import storage
from shared.config import Settings
from shared.domain import resources, validation
from shared.domain.errors import not_found
from shared.domain.keys import ExperimentRef, WorkspaceRef
from shared.services.api_common import (
    Page,
    Rendered,
    create_or_match,
    live_workspace,
    page_of,
    store,
    table_token,
    utcnow,
)


def create(settings: Settings, ref: ExperimentRef, body: object, if_match: str | None = None) -> Rendered:
    validation.experiment_create(body)
    live_workspace(settings, ref.workspace)
    doc, _ = create_or_match(store(settings, storage.T_EXPERIMENTS), ref.workspace.child_pk, ref.name.lower(),
                             lambda: resources.new_experiment(ref, utcnow()), lambda stored: True,
                             "experiment", ref.name, if_match)
    return Rendered(resources.render_experiment(doc.data), doc.etag)


def get(settings: Settings, ref: ExperimentRef) -> Rendered:
    doc = store(settings, storage.T_EXPERIMENTS).get(ref.workspace.child_pk, ref.name.lower())
    if doc is None:
        raise not_found("experiment", ref.name)
    return Rendered(resources.render_experiment(doc.data), doc.etag)


def list_by_workspace(settings: Settings, ws: WorkspaceRef, size: int, token: str | None) -> Page:
    docs, nxt = store(settings, storage.T_EXPERIMENTS).page(ws.child_pk, size, table_token(token))
    return page_of(docs, nxt, lambda d: resources.render_experiment(d.data))
