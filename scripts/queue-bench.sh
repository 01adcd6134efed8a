#!/usr/bin/env bash
# Queue benchmark: Constellation's scheduler against PostgreSQL queue peers (graphile_worker,
# PgQueuer, Procrastinate), all on the same server in the same run. Claim + complete of no-op
# tasks by 1, 4 and 16 workers, over 10 000 and 1 000 000 queued rows, without and with a
# long-running transaction open; tasks/s and claim latency p50/p99 per system and
# configuration, written to benches/results/queue-<machine>.{json,md}.
#
#   scripts/queue-bench.sh            the full matrix, twice (about 40-60 minutes on 2 cores)
#   scripts/queue-bench.sh --quick    10 000 rows, 4 workers, without and with the long txn
#   scripts/queue-bench.sh --no-build use the binaries already built
#
# Installs what it needs, idempotently: a Python virtual environment (target-queue-venv/,
# packages pinned in benches/peers/queue/requirements.txt) and release builds of
# scheduler/examples/queue_bench.rs and benches/peers/queue/graphile (into CARGO_TARGET_DIR,
# default target-qb/). PostgreSQL: DATABASE_URL (default
# postgres://postgres@127.0.0.1:5432/test); the role must be able to CREATE DATABASE and, for
# Constellation's schema, CREATE EXTENSION postgis.
#
# Knobs (environment): QB_ROUNDS (rounds of the matrix, default 2, quick 1), QB_MAX_SECS (cap of
# one run, default 10), QB_MEASURE_LARGE (completions measured out of a large queue, default
# 100000), QB_RUSTC_WAIT_SECS (how long a run waits for running rustc processes to finish,
# default 600), QB_SYSTEMS (space-separated subset of constellation graphile pgqueuer
# procrastinate), QB_MACHINE (name in the result files).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS="$ROOT/benches/peers/queue"
RESULTS="$ROOT/benches/results"

QUICK=0
BUILD=1
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        --no-build) BUILD=0 ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "unknown argument $arg (try --help)" >&2
            exit 2
            ;;
    esac
done

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target-qb}"
VENV="${QB_VENV:-$ROOT/target-queue-venv}"
MAX_SECS="${QB_MAX_SECS:-10}"
MEASURE_LARGE="${QB_MEASURE_LARGE:-100000}"
LARGE_ROWS_FROM=100000
RUSTC_WAIT_SECS="${QB_RUSTC_WAIT_SECS:-600}"
SYSTEMS="${QB_SYSTEMS:-constellation graphile pgqueuer procrastinate}"

if ((QUICK)); then
    MODE=quick
    ROUNDS="${QB_ROUNDS:-1}"
    ROWS_LIST=(10000)
    WORKERS_LIST=(4)
else
    MODE=full
    ROUNDS="${QB_ROUNDS:-2}"
    ROWS_LIST=(10000 1000000)
    WORKERS_LIST=(1 4 16)
fi
LONG_TXN_LIST=(no yes)

log() { printf '[queue-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# --- install ---------------------------------------------------------------------------------
if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating the virtual environment $VENV"
    python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install --quiet --disable-pip-version-check -r "$PEERS/requirements.txt"

CONSTELLATION_BIN="$TARGET_DIR/release/examples/queue_bench"
GRAPHILE_BIN="$TARGET_DIR/release/queue-bench-graphile"
if ((BUILD)); then
    log "building scheduler/examples/queue_bench (release)"
    (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release -p scheduler \
        --example queue_bench --locked)
    log "building benches/peers/queue/graphile (release)"
    CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release --locked \
        --manifest-path "$PEERS/graphile/Cargo.toml"
fi
for bin in "$CONSTELLATION_BIN" "$GRAPHILE_BIN"; do
    [[ -x "$bin" ]] || { echo "missing $bin (run without --no-build)" >&2; exit 1; }
done

# --- the systems -----------------------------------------------------------------------------
# Each entry: system and batch. Procrastinate fetches one job per call: batch 1 only.
ENTRIES=()
for s in $SYSTEMS; do
    case "$s" in
        constellation | graphile | pgqueuer) ENTRIES+=("$s 1" "$s 64") ;;
        procrastinate) ENTRIES+=("$s 1") ;;
        *)
            echo "unknown system $s" >&2
            exit 2
            ;;
    esac
done

driver() {
    case "$1" in
        constellation) echo "$CONSTELLATION_BIN" ;;
        graphile) echo "$GRAPHILE_BIN" ;;
        pgqueuer) echo "$PY $PEERS/pgqueuer_bench.py" ;;
        procrastinate) echo "$PY $PEERS/procrastinate_bench.py" ;;
    esac
}

admin() { "$PY" "$PEERS/qbcommon.py" "$@"; }

cleanup() { admin drop-ours || true; }
trap cleanup EXIT

# Wait until no rustc runs (the machine is shared), up to RUSTC_WAIT_SECS; prints the seconds
# waited.
wait_for_idle() {
    local waited=0
    while pgrep -x rustc >/dev/null && ((waited < RUSTC_WAIT_SECS)); do
        sleep 10
        waited=$((waited + 10))
    done
    echo "$waited"
}

RUNS="$(mktemp "${TMPDIR:-/tmp}/queue-bench-runs.XXXXXX")"
STARTED="$(date -Iseconds)"
log "mode $MODE, $ROUNDS round(s); systems: ${ENTRIES[*]}; results to $RESULTS"
admin drop-ours

# --- large queues: one template database per system, filled before any measurement ------------
for rows in "${ROWS_LIST[@]}"; do
    ((rows >= LARGE_ROWS_FROM)) || continue
    for s in $SYSTEMS; do
        log "filling the template qbt_${s}_${rows} ($rows rows)"
        # shellcheck disable=SC2046
        $(driver "$s") --rows "$rows" --template "qbt_${s}_${rows}" --prepare-only
    done
done

# One measured run: run_one SYSTEM BATCH WORKERS ROWS LONG(yes|no) VARIANT [driver args...];
# appends its JSON line (or the error) to $RUNS.
run_one() {
    local s="$1" batch="$2" workers="$3" rows="$4" long="$5" variant="$6"
    shift 6
    local args=(--workers "$workers" --rows "$rows" --batch "$batch" --max-secs "$MAX_SECS" "$@")
    if ((rows >= LARGE_ROWS_FROM)); then
        args+=(--template "qbt_${s}_${rows}" --measure "$MEASURE_LARGE")
    fi
    [[ "$long" == yes ]] && args+=(--long-txn)
    local waited busy=false out line msg err
    waited="$(wait_for_idle)"
    pgrep -x rustc >/dev/null && busy=true
    admin checkpoint
    log "$s batch $batch: $workers workers, $rows rows, long txn $long${variant:+, $variant}"
    err="$(mktemp "${TMPDIR:-/tmp}/queue-bench-err.XXXXXX")"
    # shellcheck disable=SC2046
    if out="$(timeout 900 $(driver "$s") "${args[@]}" 2>"$err")" && [[ -n "$out" ]]; then
        line="$(printf '%s\n' "$out" | tail -n 1)"
    else
        msg="$(tail -n 3 "$err" | tr '\n' ' ')"
        log "failed: $msg"
        line="$("$PY" -c 'import json, sys; print(json.dumps({"system": sys.argv[1], "batch": int(sys.argv[2]), "workers": int(sys.argv[3]), "queued_rows": int(sys.argv[4]), "long_txn": sys.argv[5] == "yes", "error": sys.argv[6]}))' \
            "$s" "$batch" "$workers" "$rows" "$long" "$msg")"
    fi
    rm -f "$err"
    "$PY" -c 'import json, sys; d = json.loads(sys.argv[1]); d.update(round=int(sys.argv[2]), rustc_wait_secs=int(sys.argv[3]), rustc_running_at_start=sys.argv[4] == "true"); d.update({"variant": sys.argv[5]} if sys.argv[5] else {}); print(json.dumps(d))' \
        "$line" "$round" "$waited" "$busy" "$variant" >>"$RUNS"
    tail -n 1 "$RUNS" | "$PY" -c 'import json, sys; d = json.load(sys.stdin); print("   ", d.get("error") or "%.0f tasks/s, claim p50 %s ms, p99 %s ms, load %s" % (d["tasks_per_sec"], d["claim_p50_ms"], d["claim_p99_ms"], d["load1"]))' >&2
}

# --- the matrix, ROUNDS times (the machine is shared: the report keeps every run and shows the
# best round of each configuration) -------------------------------------------------------------
for round in $(seq 1 "$ROUNDS"); do
    for rows in "${ROWS_LIST[@]}"; do
        for long in "${LONG_TXN_LIST[@]}"; do
            for workers in "${WORKERS_LIST[@]}"; do
                for entry in "${ENTRIES[@]}"; do
                    read -r s batch <<<"$entry"
                    run_one "$s" "$batch" "$workers" "$rows" "$long" ""
                done
            done
        done
    done
    # Diagnostic (full mode): Constellation with one tile per job, so that no two completions
    # share a job; compared in the report with jobs of 10 000 tiles.
    if [[ "$MODE" == full && " $SYSTEMS " == *" constellation "* ]]; then
        for long in "${LONG_TXN_LIST[@]}"; do
            run_one constellation 1 4 10000 "$long" "one tile per job" --jobs-of 1
        done
    fi
done
FINISHED="$(date -Iseconds)"

mkdir -p "$RESULTS"
(cd "$PEERS" && "$PY" report.py --runs "$RUNS" --out-dir "$RESULTS" --mode "$MODE" \
    --max-secs "$MAX_SECS" --measure-large "$MEASURE_LARGE" --large-rows-from "$LARGE_ROWS_FROM" \
    --rustc-wait-secs "$RUSTC_WAIT_SECS" --rounds "$ROUNDS" --started "$STARTED" \
    --finished "$FINISHED")
rm -f "$RUNS"
