#!/usr/bin/env bash
# Installs peer tools for the benchmarks, each in its own virtualenv under .venvs/ (their pins
# conflict; never a project dependency).
# Usage: bash benchmarks/peers/install_peers.sh [engine | serving | drift | all | NAME ...]
set -uo pipefail
cd "$(dirname "$0")"
mkdir -p .venvs
declare -A SPEC=(
  [prefect]="prefect>=3,<4 fastapi<0.115 pandas numpy"
  [dagster]="dagster pandas numpy"
  [zenml]="zenml[server] pandas numpy"
  [metaflow]="metaflow pandas numpy"
  [mlflow]="mlflow>=3 scikit-learn numpy"
  [mlserver]="mlserver>=1.7 mlserver-sklearn scikit-learn numpy"
  [evidently]="evidently>=0.7,<0.8 pandas<3 pyarrow"
  [nannyml]="nannyml statsmodels pyarrow"
)
declare -A GROUP=(
  [engine]="prefect dagster zenml metaflow"
  [serving]="mlflow mlserver"
  [drift]="evidently nannyml"
  [all]="prefect dagster zenml metaflow mlflow mlserver evidently nannyml"
)
names=()
for arg in "${@:-all}"; do
  if [[ -n "${GROUP[$arg]:-}" ]]; then names+=(${GROUP[$arg]}); else names+=("$arg"); fi
done
for one in "${names[@]}"; do
  if [[ -z "${SPEC[$one]:-}" ]]; then echo "unknown peer: $one"; continue; fi
  echo "== $one"
  python3 -m venv ".venvs/$one" && ".venvs/$one/bin/pip" install -q --upgrade pip \
    && ".venvs/$one/bin/pip" install -q ${SPEC[$one]} \
    || { echo "installing $one failed"; rm -rf ".venvs/$one"; }
done
