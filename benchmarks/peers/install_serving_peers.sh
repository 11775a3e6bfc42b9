#!/usr/bin/env bash
# Installs the peer model servers, each in its own virtualenv (never a project dependency).
# Usage: bash benchmarks/peers/install_serving_peers.sh [mlflow mlserver]
set -uo pipefail
cd "$(dirname "$0")"
mkdir -p .venvs
declare -A SPEC=(
  [mlflow]="mlflow>=3 scikit-learn numpy"
  [mlserver]="mlserver>=1.7 mlserver-sklearn scikit-learn numpy"
)
for name in "${@:-mlflow mlserver}"; do
  for one in $name; do
    echo "== $one"
    python3 -m venv ".venvs/$one" && ".venvs/$one/bin/pip" install -q --upgrade pip \
      && ".venvs/$one/bin/pip" install -q ${SPEC[$one]} \
      || { echo "installing $one failed"; rm -rf ".venvs/$one"; }
  done
done
