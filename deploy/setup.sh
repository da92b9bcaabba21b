#!/usr/bin/env bash
# Idempotent set-up of a fresh machine for wearmon (`make setup` runs it):
#   1. the Debian packages the local stack needs (only those missing),
#   2. the virtual environment .venv with the project and its dev extras (only when
#      pyproject.toml or constraints.txt changed since the last install),
#   3. the Kafka broker jars from Maven Central into the cache (only once).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'setup: %s\n' "$*"; }

# 1. Debian packages -------------------------------------------------------------------
missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# headless Chromium: the test that opens the Evidently drift report and checks its screenshot
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian's packages may start system services; the stack runs its own on chosen ports.
  for svc in redis-server prometheus; do
    $sudo service "$svc" stop >/dev/null 2>&1 || true
  done
fi

# 2. Python virtual environment ---------------------------------------------------------
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.wearmon-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  log "installing wearmon and its dependencies into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev]"
  touch "$stamp"
fi

# 3. Kafka broker jars -------------------------------------------------------------------
.venv/bin/wearmon stack fetch >/dev/null
log "ready"
