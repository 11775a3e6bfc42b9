#!/usr/bin/env bash
# Installs what the test suite starts for real, if missing: Debian packages (PostgreSQL, wrk,
# Node.js and npm, Redis) and Azurite, the Azure Blob emulator, from npm into .cache/azurite.
# Installs what the test suite starts for real, if missing: Debian packages (PostgreSQL, MariaDB, wrk,
# Node.js and npm, Redis, Chromium) and Azurite, the Azure Blob emulator, from npm into .cache/azurite.
set -euo pipefail
need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
{ command -v mariadbd || [ -x /usr/sbin/mariadbd ]; } >/dev/null 2>&1 || need+=(mariadb-server)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# the dashboard's browser tests drive Debian's Chromium through Playwright (never `playwright install`)
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "Missing Debian packages: ${need[*]}. Install them: sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Keep the version in step with AZURITE_VERSION in tests/store/emulators.py.
prefix="$(cd "$(dirname "$0")/.." && pwd)/.cache/azurite"
if [ ! -x "$prefix/node_modules/.bin/azurite-blob" ]; then
  npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error azurite@3.35.0 >/dev/null
fi
# asl-validator checks the Step Functions export; keep the version in step with
# ASL_VALIDATOR_VERSION in tests/export/validate_stepfunctions.py.
prefix="$(cd "$(dirname "$0")/.." && pwd)/.cache/npm/asl-validator"
if [ ! -x "$prefix/node_modules/.bin/asl-validator" ]; then
  npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error asl-validator@4.0.0 >/dev/null
fi
