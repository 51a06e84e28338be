#!/bin/sh
# After a deploy: `recording-archive check` with the Function App's own settings, as the signed-in operator
# (az login), so the deployment proves the assumptions the README's Guarantees rest on. Key Vault references are
# resolved the way the platform resolves them; one that cannot be read is reported as unresolved.
# The operator is not the app: infra grants the app's identity its roles, not the operator, so on a fresh deploy the
# lines that need a data-plane role (the archive, the state container, the queues, Key Vault) FAIL for the operator
# although the app has them. A FAIL line is therefore reported, not fatal: the hook exits 0 unless
# DEPLOYMENT_CHECK_STRICT=true (a pipeline whose identity holds the app's roles). SKIP_DEPLOYMENT_CHECK=true skips it.
set -eu

if [ "${SKIP_DEPLOYMENT_CHECK:-false}" = "true" ]; then
  echo "postdeploy: SKIP_DEPLOYMENT_CHECK=true, not running recording-archive check."
  exit 0
fi
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
root="$here/../.."
python="$root/.venv/bin/python"
if [ ! -x "$python" ] || ! "$python" -c 'import recording_pipeline' >/dev/null 2>&1; then
  echo "postdeploy: recording-archive check needs the package: run 'make setup', then 'sh infra/hooks/check.sh'." >&2
  exit 0
fi

settings=$(mktemp)
trap 'rm -f "$settings"' EXIT
az functionapp config appsettings list --subscription "$AZURE_SUBSCRIPTION_ID" \
  --resource-group "$AZURE_RESOURCE_GROUP" --name "$AZURE_FUNCTION_APP_NAME" \
  --only-show-errors --output json >"$settings"

# The app's settings as this shell's environment; the app's identity stays the app's (the operator signs in).
exports=$("$python" - "$settings" <<'PY'
import json, re, shlex, subprocess, sys

reference = re.compile(r"^@Microsoft\.KeyVault\(SecretUri=(?P<uri>[^)]+)\)$")
for item in json.load(open(sys.argv[1])):
    name, value = item["name"], item.get("value") or ""
    if name == "AZURE_CLIENT_ID" or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        continue
    found = reference.match(value.strip())
    if found:
        done = subprocess.run(
            ["az", "keyvault", "secret", "show", "--id", found["uri"], "--query", "value", "-o", "tsv"],
            capture_output=True, text=True,
        )
        value = done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else value
    print(f"export {name}={shlex.quote(value)}")
PY
)
eval "$exports"
echo "postdeploy: recording-archive check (as the signed-in operator) ..."
if "$python" -m recording_pipeline check --app-root "$root"; then
  exit 0
else
  status=$?
fi
if [ "${DEPLOYMENT_CHECK_STRICT:-false}" = "true" ]; then
  exit "$status"
fi
echo "postdeploy: recording-archive check reported FAIL lines. Those about access describe the signed-in operator's" >&2
echo "  roles, not the app's (infra/modules/rbac.bicep grants the app's identity its own); see README, 'Proving a" >&2
echo "  deployment'. DEPLOYMENT_CHECK_STRICT=true makes them fail the deploy." >&2
exit 0
