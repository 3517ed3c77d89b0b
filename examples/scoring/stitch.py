"""The final job: join every scoring job's CSV into `predictions.csv` (in input order) and write
`accuracy.json` from the labels carried in the image names."""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from examples.scoring.digits_images import label_of  # noqa: E402


def main() -> int:
    items_file = Path(os.environ["AZ_BATCHAI_INPUT_ITEMS"])
    spec = json.loads(items_file.read_text())
    urls = {o["name"]: o["url"] for item in spec["items"] for o in item.get("outputs") or []}
    predicted: dict[str, tuple[str, str]] = {}
    for name in sorted(urls):
        with urllib.request.urlopen(urls[name], timeout=60) as response:
            for line in response.read().decode().splitlines()[1:]:
                item, label, confidence = line.split(",")
                predicted[item] = (label, confidence)
    out = items_file.parent / spec["outputDir"]
    out.mkdir(parents=True, exist_ok=True)
    rows = ["name,label,predicted,confidence"]
    correct = 0
    for item in spec["items"]:
        if item["name"] not in predicted:
            continue
        label, confidence = predicted[item["name"]]
        truth = label_of(item["name"])
        correct += int(str(truth) == label)
        rows.append(f"{item['name']},{truth},{label},{confidence}")
    (out / "predictions.csv").write_text("\n".join(rows) + "\n")
    scored = len(rows) - 1
    report = {"items": len(spec["items"]), "scored": scored, "correct": correct,
              "accuracy": round(correct / scored, 4) if scored else None}
    (out / "accuracy.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
