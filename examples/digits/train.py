"""Train a small neural network (64-64-10, numpy only) on scikit-learn's digits data set.

Runs as a Batch AI job: prints progress per epoch to stdout, logs the loss and test accuracy of each
epoch as job metrics (`batchai_metrics`, on every batchai task's PYTHONPATH), writes `model.npz` and
`metrics.json` to the output directory ($AZ_BATCHAI_OUTPUT_MODEL, or --output). The demo imports `load_split`,
`load_model` and `accuracy` from here to check the downloaded model on the same held-out split.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

try:
    from batchai_metrics import log as log_metric
except ImportError:  # run by hand, outside a batchai task: no metrics to log
    def log_metric(name: str, value: float, step: int | None = None) -> None:
        return None

Params = dict[str, np.ndarray]


def load_split(seed: int = 0, test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test): pixels scaled to [0, 1], a fixed shuffled split."""
    digits = load_digits()
    x = digits.data.astype(np.float64) / 16.0
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(len(y) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def init_params(rng: np.random.Generator, n_in: int = 64, n_hidden: int = 64, n_out: int = 10) -> Params:
    return {"w1": rng.normal(0, np.sqrt(2 / n_in), (n_in, n_hidden)), "b1": np.zeros(n_hidden),
            "w2": rng.normal(0, np.sqrt(2 / n_hidden), (n_hidden, n_out)), "b2": np.zeros(n_out)}


def forward(p: Params, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    hidden = np.maximum(0, x @ p["w1"] + p["b1"])
    logits = hidden @ p["w2"] + p["b2"]
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    return hidden, probs


def accuracy(p: Params, x: np.ndarray, y: np.ndarray) -> float:
    return float((forward(p, x)[1].argmax(axis=1) == y).mean())


def train_epoch(p: Params, velocity: Params, x: np.ndarray, y: np.ndarray, rng: np.random.Generator,
                lr: float, batch: int, momentum: float = 0.9) -> float:
    order = rng.permutation(len(y))
    total = 0.0
    for start in range(0, len(y), batch):
        idx = order[start:start + batch]
        xb, yb = x[idx], y[idx]
        hidden, probs = forward(p, xb)
        total += float(-np.log(probs[np.arange(len(yb)), yb] + 1e-12).sum())
        grad_logits = probs
        grad_logits[np.arange(len(yb)), yb] -= 1
        grad_logits /= len(yb)
        grad_hidden = (grad_logits @ p["w2"].T) * (hidden > 0)
        grads = {"w2": hidden.T @ grad_logits, "b2": grad_logits.sum(axis=0),
                 "w1": xb.T @ grad_hidden, "b1": grad_hidden.sum(axis=0)}
        for name, grad in grads.items():
            velocity[name] = momentum * velocity[name] - lr * grad
            p[name] += velocity[name]
    return total / len(y)


def save_model(p: Params, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "model.npz"
    with path.open("wb") as f:
        np.savez(f, **p)
    return path


def load_model(path: Path) -> Params:
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=os.environ.get("AZ_BATCHAI_OUTPUT_MODEL", "outputs"))
    args = parser.parse_args(argv)

    x_train, y_train, x_test, y_test = load_split(args.seed)
    rng = np.random.default_rng(args.seed)
    params = init_params(rng)
    velocity = {k: np.zeros_like(v) for k, v in params.items()}
    task = os.environ.get("AZ_BATCHAI_TASK_INDEX", "0")
    print(f"task {task}: {len(y_train)} training and {len(y_test)} test images, {args.epochs} epochs", flush=True)
    history = []
    started = time.monotonic()
    for epoch in range(1, args.epochs + 1):
        loss = train_epoch(params, velocity, x_train, y_train, rng, args.lr, args.batch)
        test_acc = accuracy(params, x_test, y_test)
        history.append({"epoch": epoch, "loss": round(loss, 5), "test_accuracy": round(test_acc, 5)})
        print(f"epoch {epoch}/{args.epochs}  loss {loss:.4f}  test accuracy {test_acc:.4f}", flush=True)
        if np.isfinite(loss):  # a diverged run's loss may not be a number; its accuracy still is
            log_metric("loss", loss, step=epoch)
        log_metric("test_accuracy", test_acc, step=epoch)
    model_path = save_model(params, Path(args.output))
    metrics = {"epochs": args.epochs, "train_accuracy": accuracy(params, x_train, y_train),
               "test_accuracy": accuracy(params, x_test, y_test), "seconds": round(time.monotonic() - started, 3),
               "history": history}
    (Path(args.output) / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"saved {model_path} (test accuracy {metrics['test_accuracy']:.4f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
