#!/usr/bin/env bash
# End-to-end browser tests: builds the web UI and the binary, starts `constellation serve` (API + UI, no
# worker) on a fresh database with synthetic scenes, and drives Debian's Chromium through web/e2e/run.mjs
# (playwright-core). run.mjs starts and stops `constellation worker` processes itself when a step wants tiles
# computed, so no step races the worker.
# It also writes a long job log straight into the database with psql (the log-paging step) and runs the pages
# again at a phone's size (390×844, touch). Screenshots go to web/e2e/artifacts/. Needs PostgreSQL + PostGIS
# (E2E_PG, default below) and psql; no internet.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

pg="${E2E_PG:-postgres://postgres@127.0.0.1:5432}"
admin_url="$pg/${E2E_PG_ADMIN_DB:-test}"
chromium="${CHROMIUM:-/usr/bin/chromium}"
started=$SECONDS

log() { printf '[e2e %3ds] %s\n' "$((SECONDS - started))" "$*"; }

# --- browser: Debian's Chromium, installed only when missing (never a downloaded browser) -------
if [ ! -x "$chromium" ]; then
  log "installing Debian's chromium"
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update && apt-get install -y chromium
  else
    sudo apt-get update && sudo apt-get install -y chromium
  fi
fi
"$chromium" --version 2>/dev/null || true

# --- web UI --------------------------------------------------------------------------------------
if [ -d web/node_modules ] && [ ! web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
  log "building the web UI (npm run build)"
  (cd web && npm run build --silent)
else
  log "installing, checking and building the web UI (scripts/web.sh)"
  scripts/web.sh
fi
if [ ! -f web/node_modules/playwright-core/package.json ]; then
  echo "error: web/node_modules/playwright-core is missing; run: (cd web && npm ci)" >&2
  exit 1
fi

# --- binary (shares target/ with other builds: may wait on cargo's lock) -------------------------
# CONSTELLATION_BIN: a binary already built (scripts/test.sh passes the one its tests built);
# otherwise build the default one.
if [ -n "${CONSTELLATION_BIN:-}" ]; then
  bin="$(cd "$(dirname "$CONSTELLATION_BIN")" && pwd)/$(basename "$CONSTELLATION_BIN")"
  [ -x "$bin" ] || { echo "error: CONSTELLATION_BIN=$CONSTELLATION_BIN is not an executable" >&2; exit 1; }
else
  log "building the binary (cargo build -p constellation --locked)"
  cargo build -p constellation --locked
  bin="$root/target/debug/constellation"
fi

# --- scratch space, database and server, all torn down on exit ------------------------------------
tmp="$(mktemp -d "${TMPDIR:-/tmp}/constellation-e2e.XXXXXX")"
db="e2e_$(date +%s)_$$"
server_pid=""
db_created=0
worker_pids="$tmp/worker.pids" # run.mjs appends each worker's pid
: >"$worker_pids"
# Stops a process we started (SIGTERM, then SIGKILL after 5 s).
stop_pid() {
  local pid=$1
  kill -0 "$pid" 2>/dev/null || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  # Workers left by run.mjs (it kills them itself on exit; this covers it being killed): only pids whose
  # command line is a worker on this run's database.
  if [ -f "$worker_pids" ]; then
    while read -r pid; do
      [ -n "$pid" ] || continue
      if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q -- " worker .*/$db "; then
        echo "warning: killing leftover worker $pid" >&2
        stop_pid "$pid"
      fi
    done <"$worker_pids"
  fi
  if [ -n "$server_pid" ]; then
    stop_pid "$server_pid"
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ "$db_created" -eq 1 ]; then
    psql -q "$admin_url" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 \
      || echo "warning: could not drop database $db" >&2
  fi
  if [ "$rc" -ne 0 ] && [ -f "$tmp/server.log" ]; then
    echo "--- last server log lines ($tmp/server.log) ---" >&2
    tail -n 40 "$tmp/server.log" >&2 || true
  fi
  if [ "$rc" -ne 0 ] && [ -s "$tmp/worker.log" ]; then
    echo "--- last worker log lines ($tmp/worker.log) ---" >&2
    tail -n 40 "$tmp/worker.log" >&2 || true
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "generating a synthetic Sentinel-2 scene in $tmp"
# 2048 px: the form's smallest tile is 256 px, so the submitted job has 64 tiles, enough to stop the worker
# part-way and see some footprints green and some grey; the job cancelled from the UI runs on the same scene
# with 128 px tiles (256 tiles).
"$bin" fixtures --kind sentinel2 --size-px 2048 -o "$tmp/s2" >/dev/null
for f in B04.tif B08.tif SCL.tif; do
  [ -f "$tmp/s2/$f" ] || { echo "error: fixtures did not write $f" >&2; exit 1; }
done

log "creating database $db"
psql -q -v ON_ERROR_STOP=1 "$admin_url" -c "CREATE DATABASE \"$db\"" >/dev/null
db_created=1

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
log "starting constellation serve on $base (no worker)"
"$bin" serve --database-url "$pg/$db" --listen "127.0.0.1:$port" --data-dir "$tmp/data" \
  --web-dir "$root/web/dist" >"$tmp/server.log" 2>&1 &
server_pid=$!

ready=0
for _ in $(seq 1 120); do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "error: constellation serve exited before it was ready" >&2
    exit 1
  fi
  if curl -fsS -o /dev/null "$base/readyz" 2>/dev/null; then ready=1; break; fi
  sleep 0.5
done
[ "$ready" -eq 1 ] || { echo "error: $base/readyz did not answer 200 within 60 s" >&2; exit 1; }
log "server ready"

mkdir -p web/e2e/artifacts
log "running web/e2e/run.mjs"
set +e
(cd web && E2E_BASE_URL="$base" E2E_BIN="$bin" E2E_DATABASE_URL="$pg/$db" \
  E2E_SCENE="$tmp/s2" E2E_LARGE_SCENE="$tmp/s2" E2E_ARTIFACTS="$root/web/e2e/artifacts" \
  E2E_CHROMIUM="$chromium" E2E_PROFILE_DIR="$tmp/profile" \
  E2E_WORKER_LOG="$tmp/worker.log" E2E_WORKER_PIDS="$worker_pids" node e2e/run.mjs)
status=$?
set -e
log "done (exit $status); screenshots in web/e2e/artifacts/"
exit "$status"
