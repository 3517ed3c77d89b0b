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
output() { echo "$outputs" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1']['value'])"; }
app="$(output functionAppName)"; url="$(output apiUrl)"; vault="$(output keyVaultName)"
storage="$(output storageAccountName)"

# The keys the app reads from Key Vault (by reference), made once: node messages are signed with the
# first, secrets are sealed at rest with the second. Rotating them means: new value, then restart.
for secret in message-key secrets-key; do
  if ! az keyvault secret show --vault-name "$vault" --name "$secret" --output none 2>/dev/null; then
    az keyvault secret set --vault-name "$vault" --name "$secret" --value "$(openssl rand -base64 32)" --output none
  fi
done

# Nodes install the agent from the service's wheelhouse (no package index at boot): the project's wheel
# and its pinned dependencies for the nodes' Python (Ubuntu 24.04: 3.12).
house="$(cd "$root" && python3 -m shared.localstack.wheelhouse --python-version 3.12)"
az storage container create --account-name "$storage" --name batchai-wheelhouse --auth-mode login --output none
az storage blob upload-batch --account-name "$storage" --destination batchai-wheelhouse --source "$house" \
  --pattern '*.whl' --overwrite --auth-mode login --output none

package="$(mktemp -d)/batchai.zip"
(cd "$root" && zip -q -r "$package" function_app.py host.json requirements.txt pyproject.toml functions shared \
  -x '*/__pycache__/*' '*.pyc')
# Flex Consumption builds the Python dependencies from requirements.txt on the platform.
az functionapp deployment source config-zip --resource-group "$rg" --name "$app" --src "$package" \
  --build-remote true --output none
az functionapp restart --resource-group "$rg" --name "$app" --output none  # re-reads Key Vault references
echo "batchai API: $url"
