"""Adapters: Table, Queue and Blob storage, compute providers and auth, behind narrow ports."""
