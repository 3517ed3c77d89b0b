"""A scoring job for the tests: upper-cases each item; an item whose text contains FAIL fails.

Reads $AZ_BATCHAI_INPUT_ITEMS, downloads each item by its URL, writes outputs/<item>.out and
results.json beside the items file; exits 1 when an item failed.
"""

import json
import os
import sys
import urllib.request
from pathlib import Path

items_file = Path(os.environ["AZ_BATCHAI_INPUT_ITEMS"])
work = items_file.parent
spec = json.loads(items_file.read_text())
results = []
for item in spec["items"]:
    with urllib.request.urlopen(item["url"], timeout=30) as response:
        text = response.read().decode()
    if "FAIL" in text:
        results.append({"name": item["name"], "status": "failed", "error": f"cannot score {item['name']}"})
        continue
    rel = f"scored/{item['name'].rsplit('/', 1)[-1]}.out"
    out = work / spec["outputDir"] / rel
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text.upper())
    results.append({"name": item["name"], "status": "succeeded", "outputs": [rel]})
(work / spec["resultsFile"]).write_text(json.dumps({"items": results}))
print(f"{spec['job']}: {len(results)} items")
sys.exit(1 if any(r["status"] == "failed" for r in results) else 0)
