"""Batch scoring of digit images on the local stack: `python -m examples.scoring`."""
