"""The scoring job: classify this job's digit images with the trained model.

Batch scoring contract (see shared/domain/scoring.py): $AZ_BATCHAI_INPUT_ITEMS names items.json
(each item: input blob name and a read URL); outputs go under `outputs/` beside it and per-item
status into `results.json`. The model comes from $AZ_BATCHAI_INPUT_MODEL (a mounted container).
Each job writes one CSV (`predictions/<job>.csv`) that every one of its items points to.

`--work-ms N` adds N ms of extra model compute per item (the benchmark's stand-in for a heavier model).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402

from examples.scoring.digits_images import from_pgm  # noqa: E402
from examples.scoring.model import load, probabilities  # noqa: E402


def extra_work(params: dict[str, np.ndarray], pixels: np.ndarray, work_ms: float) -> None:
    """Burn about `work_ms` of CPU with the model itself (repeated forward passes)."""
    if work_ms <= 0:
        return
    deadline = time.perf_counter() + work_ms / 1000.0
    batch = np.repeat(pixels[None, :], 64, axis=0)
    while time.perf_counter() < deadline:
        probabilities(params, batch)


def score_item(params: dict[str, np.ndarray], data: bytes, work_ms: float = 0.0) -> tuple[int, float]:
    pixels = from_pgm(data)
    probs = probabilities(params, pixels[None, :])[0]
    extra_work(params, pixels, work_ms)
    return int(probs.argmax()), float(probs.max())


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work-ms", type=float, default=0.0)
    args = parser.parse_args()
    items_file = Path(os.environ["AZ_BATCHAI_INPUT_ITEMS"])
    spec = json.loads(items_file.read_text())
    params = load(Path(os.environ["AZ_BATCHAI_INPUT_MODEL"]) / "model.npz")
    rel = f"predictions/{spec['job']}.csv"
    lines, results = ["name,predicted,confidence"], []
    for item in spec["items"]:
        try:
            label, confidence = score_item(params, fetch(item["url"]), args.work_ms)
        except (OSError, ValueError) as error:
            results.append({"name": item["name"], "status": "failed", "error": str(error)})
            continue
        lines.append(f"{item['name']},{label},{confidence:.4f}")
        results.append({"name": item["name"], "status": "succeeded", "outputs": [rel]})
    out = items_file.parent / spec["outputDir"] / rel
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    (items_file.parent / spec["resultsFile"]).write_text(json.dumps({"items": results}))
    failed = sum(r["status"] == "failed" for r in results)
    print(f"{spec['job']}: {len(results) - failed} scored, {failed} failed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
