#!/usr/bin/env bash
# Installs the peer drift libraries, each in its own virtualenv (never a project dependency).
# Usage: bash benchmarks/peers/install_drift_peers.sh [evidently nannyml]
set -uo pipefail
cd "$(dirname "$0")"
mkdir -p .venvs
declare -A SPEC=(
  [evidently]="evidently>=0.7,<0.8 pandas<3 pyarrow"
  [nannyml]="nannyml pyarrow"
)
for name in "${@:-evidently nannyml}"; do
  for one in $name; do
    echo "== $one"
    python3 -m venv ".venvs/$one" && ".venvs/$one/bin/pip" install -q --upgrade pip \
      && ".venvs/$one/bin/pip" install -q ${SPEC[$one]} \
      || { echo "installing $one failed"; rm -rf ".venvs/$one"; }
  done
done
