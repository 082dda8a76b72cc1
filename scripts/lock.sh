#!/usr/bin/env bash
# Regenerate constraints.txt: every package of a full install (runtime, test and
# PostgreSQL extras) at the exact version the registry serves today. `make`
# installs through it, so a fresh clone installs what was tested.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PY:-python3.11}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$py" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q -e '.[test,postgres]'
{
  echo "# Exact versions of every package make installs (pip install -c constraints.txt)."
  echo "# Regenerate with: make lock"
  "$tmp/venv/bin/pip" freeze --exclude-editable | grep -v '^#'
} > constraints.txt
echo "constraints.txt: $(grep -vc '^#' constraints.txt) packages pinned"
