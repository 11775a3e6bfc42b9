#!/usr/bin/env bash
# Installs the peer pipeline engines, each in its own virtualenv (their pins conflict; never a
# project dependency). Usage: bash benchmarks/peers/install_engine_peers.sh [prefect dagster zenml metaflow]
set -uo pipefail
cd "$(dirname "$0")"
mkdir -p .venvs
declare -A SPEC=(
  [prefect]="prefect>=3,<4 fastapi<0.115 pandas numpy"
  [dagster]="dagster pandas numpy"
  [zenml]="zenml[server] pandas numpy"
  [metaflow]="metaflow pandas numpy"
)
for name in "${@:-prefect dagster zenml metaflow}"; do
  for one in $name; do
    echo "== $one"
    python3 -m venv ".venvs/$one" && ".venvs/$one/bin/pip" install -q --upgrade pip \
      && ".venvs/$one/bin/pip" install -q ${SPEC[$one]} \
      || { echo "installing $one failed"; rm -rf ".venvs/$one"; }
  done
done
