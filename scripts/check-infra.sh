#!/usr/bin/env bash
# Static security checks of the Bicep templates in infra/ with checkov.
#
# Idempotent: creates .venv-infra on first use and reinstalls
# requirements-infra.txt only when that file changes. Exits non-zero when a
# check fails, when a .bicep file cannot be parsed (otherwise checkov would
# silently skip it), or when an inline skip has no reason.
#
# Env: PYTHON (interpreter for the venv, default python3),
#      INFRA_VENV (venv path, default <repo>/.venv-infra).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${INFRA_VENV:-$root/.venv-infra}"
requirements="$root/requirements-infra.txt"
python="${PYTHON:-python3}"
stamp="$venv/.requirements-infra.sha256"

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
  echo "check-infra: creating $venv"
  rm -rf "$venv"
  "$python" -m venv "$venv"
fi

wanted="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ] || [ ! -x "$venv/bin/checkov" ]; then
  echo "check-infra: installing $(basename "$requirements")"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  echo "$wanted" >"$stamp"
fi

cd "$root"

# Every inline suppression must carry a reason: "checkov:skip=CKV_ID: reason".
bad_skips="$(grep -rnE 'checkov:skip=' --include='*.bicep' infra | grep -vE 'checkov:skip=CKV2?_[A-Z]+_[0-9]+: *[^ ]' || true)"
if [ -n "$bad_skips" ]; then
  echo "check-infra: checkov skips without a reason:" >&2
  echo "$bad_skips" >&2
  exit 1
fi

# Parsing errors fail the run instead of being counted and ignored.
export CKV_PARSE_ERROR_FAIL=true
exec "$venv/bin/checkov" -d infra --framework bicep --skip-download --quiet --compact
