#!/usr/bin/env bash
# Prints the path of a Python 3.13 interpreter, the version the app runs on in Azure: python3.13 on PATH if it
# really runs (a pyenv shim may not), else pyenv's newest 3.13.x. Prints nothing when there is none.
set -u
is_313() { [ -n "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' >/dev/null 2>&1; }
candidate=$(command -v python3.13 2>/dev/null || true)
if is_313 "$candidate"; then
  echo "$candidate"
  exit 0
fi
root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
for candidate in $(ls -d "$root"/versions/3.13*/bin/python3.13 2>/dev/null | sort -V -r); do
  if is_313 "$candidate"; then
    echo "$candidate"
    exit 0
  fi
done
