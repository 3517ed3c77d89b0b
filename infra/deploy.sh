#!/usr/bin/env bash
# Deploys batchai to Azure: resource group, infrastructure (main.bicep), then the Function App code.
# Usage: infra/deploy.sh <resource-group> <location> [prefix] [extra `key=value` Bicep parameters...]
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 <resource-group> <location> [prefix] [param=value ...]" >&2
  exit 2
fi
rg="$1"; location="$2"; prefix="${3:-batchai}"; shift $(( $# >= 3 ? 3 : 2 ))
root="$(cd "$(dirname "$0")/.." && pwd)"

az group create --name "$rg" --location "$location" --output none
outputs="$(az deployment group create --resource-group "$rg" --name batchai \
  --template-file "$root/infra/main.bicep" --parameters prefix="$prefix" "$@" \
  --query properties.outputs --output json)"
app="$(echo "$outputs" | python3 -c 'import json,sys; print(json.load(sys.stdin)["functionAppName"]["value"])')"
url="$(echo "$outputs" | python3 -c 'import json,sys; print(json.load(sys.stdin)["apiUrl"]["value"])')"

package="$(mktemp -d)/batchai.zip"
(cd "$root" && zip -q -r "$package" function_app.py host.json requirements.txt pyproject.toml functions shared \
  -x '*/__pycache__/*' '*.pyc')
# Flex Consumption builds the Python dependencies from requirements.txt on the platform.
az functionapp deployment source config-zip --resource-group "$rg" --name "$app" --src "$package" \
  --build-remote true --output none
echo "batchai API: $url"
