"""The digits model at scoring time: load `model.npz` (written by examples/digits/train.py) and
classify, with numpy only, so that a scoring job starts without importing scikit-learn (about 1 s)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

Params = dict[str, np.ndarray]


def load(path: Path) -> Params:
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def probabilities(p: Params, x: np.ndarray) -> np.ndarray:
    """Softmax outputs of train.py's 64-64-10 network for a batch of 64-pixel rows."""
    hidden = np.maximum(0, x @ p["w1"] + p["b1"])
    logits = hidden @ p["w2"] + p["b2"]
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    return probs / probs.sum(axis=1, keepdims=True)
