"""The final job of the tests: concatenates every succeeded item's output, in input order."""

import json
import os
import urllib.request
from pathlib import Path

items_file = Path(os.environ["AZ_BATCHAI_INPUT_ITEMS"])
spec = json.loads(items_file.read_text())
parts = []
for item in spec["items"]:
    for output in item.get("outputs") or []:
        with urllib.request.urlopen(output["url"], timeout=30) as response:
            parts.append(response.read().decode())
out = items_file.parent / spec["outputDir"] / "combined.txt"
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text("\n".join(parts))
print(f"combined {len(parts)} outputs")
