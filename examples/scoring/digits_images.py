"""Digit images as tiny PGM files (8x8, 8-bit), rendered from scikit-learn's digits data set; the
label travels in the name (`digit-0042-label7.pgm`) so that the final job can measure accuracy."""

from __future__ import annotations

import re

import numpy as np

NAME_RE = re.compile(r"digit-(\d+)-label(\d)\.pgm$")


def to_pgm(pixels: np.ndarray) -> bytes:
    """64 pixel values in [0, 1] as a binary 8x8 PGM."""
    data = np.clip(np.rint(pixels.reshape(8, 8) * 255), 0, 255).astype(np.uint8)
    return b"P5\n8 8\n255\n" + data.tobytes()


def from_pgm(data: bytes) -> np.ndarray:
    """The 64 pixel values in [0, 1] of `to_pgm`'s output."""
    header, _, rest = data.partition(b"\n255\n")
    if not header.startswith(b"P5") or len(rest) != 64:
        raise ValueError("not an 8x8 8-bit PGM")
    return np.frombuffer(rest, dtype=np.uint8).astype(np.float64) / 255.0


def image_name(index: int, label: int) -> str:
    return f"digit-{index:04d}-label{label}.pgm"


def label_of(name: str) -> int | None:
    m = NAME_RE.search(name)
    return int(m.group(2)) if m else None
