#!/usr/bin/env bash
# Runs checkov (pinned) on Bicep templates: `infra/checkov.sh [checkov args...]`.
# checkov pins libraries (packaging, python-dateutil) older than the project's, so it lives in its
# own virtual environment under .venv/tools/checkov, created on first use.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tool="$root/.venv/tools/checkov"
version="3.3.30"
if [ ! -x "$tool/bin/checkov" ] || ! "$tool/bin/checkov" --version 2>/dev/null | grep -qx "$version"; then
  python3.11 -m venv "$tool"
  "$tool/bin/pip" install -q "checkov==$version" >&2
fi
exec "$tool/bin/checkov" --skip-download "$@"
