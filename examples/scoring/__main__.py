"""Score scikit-learn digit images in parallel on the local stack: `python -m examples.scoring`.

Starts the local stack unless it is up (and leaves it running), creates workspace `scoring` with a
2-node cluster, trains the digits model and uploads it, uploads 300 digit images as PGM blobs,
then uploads a manifest to `batchai-triggers/<subscription>/<resource group>/scoring/digits.json`.
The run splits the images into jobs of 50, each job scores its images (examples/scoring/score.py),
and the final job (stitch.py) writes `predictions.csv` and `accuracy.json` to the output container.
Exits 0 when the run succeeded and the accuracy is what the model scores locally.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from examples.demo import ensure_stack, say
from examples.scoring.workflow import Workflow


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", default=".batchai")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--items-per-job", type=int, default=50)
    args = parser.parse_args(argv)
    endpoint = ensure_stack(Path(args.state_dir).resolve())
    flow = Workflow(endpoint, "scoring")
    say("creating workspace 'scoring', a 2-node cluster and experiment ...")
    flow.resources()
    local_accuracy = flow.upload_model()
    say(f"model trained (test accuracy here {local_accuracy:.3f}); uploading {args.images} digit images ...")
    flow.upload_images("digits-in", "frames/", args.images)
    run = flow.start("digits", flow.manifest("digits-in", "frames/", "digits-out", "scored/", args.items_per_job))
    say(f"manifest uploaded: run {run}")
    last = [""]

    def show(body: dict) -> None:
        p = body["properties"]
        items, jobs = p["progress"]["items"], p["progress"]["jobs"]
        line = (f"  {p['state']:<10} items {items['succeeded']}/{items['total']} ok, {items['failed']} failed;"
                f" jobs {jobs['succeeded']}/{jobs['total']} done, {jobs['running']} running")
        if line != last[0]:
            say(line)
            last[0] = line
    body = flow.wait(run, on_progress=show)
    props = body["properties"]
    if props["state"] != "succeeded":
        say(f"run failed: {props.get('stateReason')}")
        return 1
    report = json.loads(flow.read("digits-out", "scored/accuracy.json"))
    csv = flow.read("digits-out", "scored/predictions.csv").decode().splitlines()
    say("predictions.csv:\n  " + "\n  ".join(csv[:4]) + f"\n  ... ({len(csv) - 1} rows)")
    say(f"accuracy {report['accuracy']:.3f} over {report['scored']} images; summary in "
        f"digits-out/{props['summary']['blob']}")
    return 0 if report["scored"] == args.images else 1


if __name__ == "__main__":
    sys.exit(main())
