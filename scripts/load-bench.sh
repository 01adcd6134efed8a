#!/usr/bin/env bash
# The API load benchmark, in one command: installs what it needs (only what is missing: the
# system packages through setup.sh, oha from crates.io), builds the server and the WebSocket
# client in release mode, starts `constellation serve` over a fresh database, seeds jobs (a
# worker finishes them), then measures
#   1. reads at a fixed rate (default 1000 req/s, 30 s each) per GET endpoint and as a mix:
#      p50/p90/p99/max latency and the achieved rate (oha, latency-corrected);
#   2. WebSocket fan-out to 1000 subscribers of /v1/ws: event latency (receive time minus the
#      event's ts) and events received against events stored, for steady event rates and for
#      the events of real jobs run by a worker (benches/load/wsfan).
# Results: benches/results/load-<machine>.json and .md.
#
# Options:
#   --rev REV            build and measure this git revision (default: the working tree)
#   --machine NAME       results name (default: from the CPU model and core count)
#   --rate N             reads per second (1000)      --duration-secs N  per read run (30)
#   --subscribers N      WebSocket subscribers (1000) --ws-rates A,B     events/s (20,100)
#   --ws-secs N          per steady run (30)          --ws-jobs N        jobs of the jobs run (8)
#   --only a,b           only these runs: jobs-list, job, job-tasks, footprints,
#                        footprints-live, stac, tile-png, healthz, mix, cold, ws, ws-jobs
#   --quick              5 s runs, 2 ws rates of 5 s: a smoke test, not a measurement
#   --profile            then perf the server and database under footprints and job-list
#                        reads (300 req/s) and the fastest ws rate: where the time goes
# Environment: DATABASE_URL (the server the benchmark database is created on; default
# postgres://postgres@127.0.0.1:5432/test), CARGO_TARGET_DIR (default target-load).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

REV=""
MACHINE=""
export LB_RATE=1000 LB_DURATION_SECS=30 LB_SUBSCRIBERS=1000 LB_WS_RATES=20,100 LB_WS_SECS=30
export LB_WS_JOBS=8 LB_ONLY="" LB_CONNECTIONS=32 LB_CLIENT_CPUS=1 LB_PROFILE=""
while [ $# -gt 0 ]; do
    case "$1" in
        --rev) REV="$2"; shift 2 ;;
        --machine) MACHINE="$2"; shift 2 ;;
        --rate) LB_RATE="$2"; shift 2 ;;
        --duration-secs) LB_DURATION_SECS="$2"; shift 2 ;;
        --subscribers) LB_SUBSCRIBERS="$2"; shift 2 ;;
        --ws-rates) LB_WS_RATES="$2"; shift 2 ;;
        --ws-secs) LB_WS_SECS="$2"; shift 2 ;;
        --ws-jobs) LB_WS_JOBS="$2"; shift 2 ;;
        --only) LB_ONLY="$2"; shift 2 ;;
        --quick) LB_DURATION_SECS=5; LB_WS_SECS=5; LB_WS_JOBS=2; shift ;;
        --profile) LB_PROFILE=1; shift ;;
        -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
        *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

say() { echo "load-bench: $*" >&2; }

BASE_DB_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target-load}"
TOOLS="$ROOT/target/tools"

# 1. What the machine needs: GDAL, PostGIS, psql (setup.sh is idempotent), and oha.
if ! command -v gdal-config >/dev/null || ! command -v psql >/dev/null \
    || ! ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1; then
    say "installing system packages (scripts/setup.sh)"
    ./scripts/setup.sh
fi
if [ -n "$LB_PROFILE" ] && ! command -v perf >/dev/null; then
    say "installing perf (linux-perf)"
    apt-get install -y -qq linux-perf >/dev/null
fi
OHA="$TOOLS/bin/oha"
if [ ! -x "$OHA" ]; then
    say "installing oha from crates.io into $TOOLS"
    CARGO_TARGET_DIR="$TARGET/oha-build" cargo install oha --locked --root "$TOOLS"
fi

# 2. The server (a git revision, or the working tree) and the WebSocket client.
if [ -n "$REV" ]; then
    COMMIT="$(git rev-parse --verify "$REV^{commit}")"
    SRC="$TARGET/src-$COMMIT"
    if [ ! -f "$SRC/Cargo.toml" ]; then
        mkdir -p "$SRC"
        git archive "$COMMIT" | tar -x -C "$SRC"
    fi
    SOURCE="commit $COMMIT"
else
    SRC="$ROOT"
    SOURCE="working tree at $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!benches/results' || echo ' with local changes')"
fi
say "building the server ($SOURCE)"
(cd "$SRC" && CARGO_TARGET_DIR="$TARGET" cargo build --release -p constellation --locked)
BIN="$TARGET/release/constellation"
say "building wsfan"
(cd "$ROOT/benches/load/wsfan" && CARGO_TARGET_DIR="$TARGET" cargo build --release --locked)
WSFAN="$TARGET/release/wsfan"

# 3. A fresh database, the server over it; both go when this script ends.
DB="loadbench_$(date +%s)_$$"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/load-bench.XXXXXX")"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    psql "$BASE_DB_URL" -qAt -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    if [ -z "${LB_KEEP_WORK:-}" ]; then rm -rf "$WORK"; else say "kept $WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
psql "$BASE_DB_URL" -qAt -c "CREATE DATABASE $DB" >/dev/null
export DATABASE_URL="${BASE_DB_URL%/*}/$DB"
"$BIN" migrate >/dev/null

# Many sockets: the server and the clients need a file each.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
mkdir -p "$WORK/data"
(cd "$WORK" && exec "$BIN" --log-format json serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" \
    2>"$WORK/server.log" >/dev/null) &
SERVER_PID=$!
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
    sleep 0.2
done
curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null

if [ -z "$MACHINE" ]; then
    MODEL="$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2 | tr 'A-Z' 'a-z' \
        | sed -E 's/\(r\)|\(tm\)|processor|[0-9]+-core|cpu @.*//g; s/[^a-z0-9]+/-/g; s/^-+|-+$//g' \
        | cut -d- -f1-3)"
    MACHINE="${MODEL:-cpu}-$(nproc)c"
fi

# 4. Seed, measure, write the results.
export LB_BASE_URL="http://127.0.0.1:$PORT" LB_BIN="$BIN" LB_OHA="$OHA" LB_WSFAN="$WSFAN"
export LB_WORK="$WORK" LB_RESULTS="${LOAD_RESULTS_DIR:-$ROOT/benches/results}" LB_MACHINE="$MACHINE"
export LB_SERVER_PID="$SERVER_PID" LB_SERVER_LOG="$WORK/server.log" LB_SOURCE="$SOURCE"
python3 "$ROOT/benches/load/drive.py"
