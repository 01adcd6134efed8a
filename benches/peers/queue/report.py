"""Write the queue benchmark's results: ``queue-<machine>.json`` (machine, PostgreSQL, peer
versions and every run as measured) and ``.md`` (tables of tasks/s and claim latency, system by
configuration, and who leads where). Reads the JSON lines scripts/queue-bench.sh collected.

    python report.py --runs runs.jsonl --out-dir benches/results --mode full ...

The files are named ``queue-<machine>`` (``-quick`` added in quick mode), the machine named
from its CPU model and core count unless ``QB_MACHINE`` names it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import statistics
from pathlib import Path

import asyncpg

import qbcommon

HERE = Path(__file__).resolve().parent

# Rows of the tables, in order: (system as the drivers name it, batch).
ORDER = [
    ("constellation", 1),
    ("graphile_worker (get_job/complete_job loop)", 1),
    ("pgqueuer", 1),
    ("procrastinate", 1),
    ("constellation", 64),
    ("graphile_worker (local queue)", 64),
    ("pgqueuer", 64),
]


# What each system does per task: facts from each system's code (Constellation's
# complete_and_claim in scheduler/migrations/0009 and its frontier in Queue; the peers'
# statements as installed), which explain the tables above; the numbers themselves are only
# in the tables.
WHY = [
    "## Why the numbers differ",
    "",
    "What each system writes per task (read from each system's SQL):",
    "",
    "- **Constellation** claims by locking up to n queued rows through the partial claim index "
    "(`FOR NO KEY UPDATE SKIP LOCKED`), entered where the worker's last claim ended (its "
    "frontier; from the head when that has too few rows left, and at least every second), "
    "marks them running with a lease, starts the "
    "job on its first claim and returns each task with its job's recipe, parameters and inputs "
    "and its tile's window (joins on `job` and `tile`). It completes with one statement that "
    "locks the runs in id order, deletes them from `task`, inserts them into `task_history` "
    "with their outputs, adds their count to its backend's shard of the job's progress "
    "(`job_progress`, one of 64 rows per job, so concurrent completions of one job update "
    "different rows), probes for the job's other tile rows (`FOR KEY SHARE SKIP LOCKED`) and "
    "appends a `progress` event; unblocking the finalize task after a job's last tile and "
    "ending the job after its finalize task run as further statements only then. A worker "
    "completes a batch and claims its next together: at batch 1 in one call "
    "(`complete_and_claim`: one round trip and one commit), above it as two calls at once on "
    "two connections (`complete` and `claim`), so its claim latency is that round's time, "
    "completion included. "
    "Progress events are announced by the completing process at most every 50 ms rather than "
    "by a NOTIFY per commit. Everything is fenced on (task, attempt, worker); tile completions "
    "do not lock the job row.",
    "- **graphile_worker**: `get_job` locks one available job (`SKIP LOCKED`) and updates its "
    "attempts and lock owner; `complete_job` deletes it. The local queue fetches a batch with "
    "the same statement and deletes completions in batches (`complete_job_batch_delay`).",
    "- **PgQueuer**: `dequeue` marks a batch of queued rows picked; completions are buffered "
    "and written in batches (deleted from the queue table, logged to its log table).",
    "- **Procrastinate**: `procrastinate_fetch_job_v2` locks one `todo` job (checking its lock "
    "and queueing lock) and marks it `doing`; `procrastinate_finish_job_v1` updates its status; "
    "triggers append status events.",
    "",
    "So at batch 1 Constellation does more work per task than graphile_worker (its "
    "statements write several tables: task, task_history, job_progress, event, and read the "
    "job and tile rows, where graphile_worker's write one row) in fewer round trips and "
    "commits (one per task against graphile_worker's two). Which of the two weighs more "
    "depends on how many workers share the cores and the WAL flushes; the diagnostic below "
    "runs the same claims and completions with one tile per job (one finalize task per tile "
    "as well).",
    "",
    "A long transaction keeps every dead row version of every system (claims and completions "
    "all leave some) from being pruned or vacuumed while it is open; the table below gives "
    "its measured effect per system.",
    "",
]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_slug(cpu: str, cores: int) -> str:
    words = re.sub(r"\(.*?\)|processor|cpu|\d+-core", " ", cpu, flags=re.I).split()
    slug = "-".join(w.lower() for w in words[:2] if re.match(r"^[A-Za-z0-9]+$", w))
    return f"{slug or 'cpu'}-{cores}c"


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


async def postgres_info() -> dict:
    conn = await asyncpg.connect(qbcommon.admin_url())
    try:
        version = await conn.fetchval("SELECT version()")
        rows = await conn.fetch(
            "SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1::text[])",
            [
                "autovacuum",
                "synchronous_commit",
                "fsync",
                "wal_sync_method",
                "shared_buffers",
                "max_connections",
                "work_mem",
            ],
        )
    finally:
        await conn.close()
    settings = {r["name"]: r["setting"] + (f" ({r['unit']})" if r["unit"] else "") for r in rows}
    return {"version": version, "settings": settings}


def graphile_version() -> str | None:
    lock = HERE / "graphile" / "Cargo.lock"
    text = lock.read_text() if lock.exists() else ""
    m = re.search(r'name = "graphile_worker"\nversion = "([^"]+)"', text)
    return m.group(1) if m else None


def peer_versions() -> dict:
    versions = {"graphile_worker (crates.io)": graphile_version()}
    for pkg in ["pgqueuer", "procrastinate", "asyncpg", "psycopg", "uvloop"]:
        try:
            versions[f"{pkg} (PyPI)"] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[f"{pkg} (PyPI)"] = None
    versions["python"] = platform.python_version()
    return versions


def fmt_rate(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:,.0f}"


def fmt_ms(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def label(system: str, batch: int) -> str:
    return f"{system}, batch {batch}"


def matching(runs: list[dict], system: str, batch: int, workers: int, rows: int, long_txn: bool):
    return [
        r
        for r in runs
        if r.get("system") == system
        and r.get("batch") == batch
        and r.get("workers") == workers
        and r.get("queued_rows") == rows
        and r.get("long_txn") == long_txn
    ]


def find(runs: list[dict], system: str, batch: int, workers: int, rows: int, long_txn: bool):
    """The best round of a configuration (highest tasks/s), or None."""
    found = matching(runs, system, batch, workers, rows, long_txn)
    return max(found, key=lambda r: r["tasks_per_sec"]) if found else None


def spreads(runs: list[dict]) -> list[float]:
    """Per configuration run more than once: (best - worst) / best tasks/s."""
    groups: dict[tuple, list[float]] = {}
    for r in runs:
        key = (r["system"], r["batch"], r["workers"], r["queued_rows"], r["long_txn"], r.get("variant"))
        groups.setdefault(key, []).append(r["tasks_per_sec"])
    return [(max(v) - min(v)) / max(v) for v in groups.values() if len(v) > 1 and max(v) > 0]


def markdown(doc: dict) -> str:
    diagnostics = [r for r in doc["runs"] if "error" not in r and r.get("variant")]
    runs = [r for r in doc["runs"] if "error" not in r and not r.get("variant")]
    failed = [r for r in doc["runs"] if "error" in r]
    workers_set = sorted({r["workers"] for r in runs})
    rows_set = sorted({r["queued_rows"] for r in runs})
    present = [(s, b) for (s, b) in ORDER if any(r["system"] == s and r["batch"] == b for r in runs)]
    m = doc["machine"]
    pg = doc["postgresql"]
    out: list[str] = []
    out.append(f"# Queue benchmark: Constellation's scheduler against PostgreSQL queue peers ({doc['mode']})")
    out.append("")
    out.append(
        f"Measured {doc['date']} on **{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB** "
        f"({m['os']}), all systems against the same **{pg['version'].split(' on ')[0]}** "
        "server in the same run, one configuration after the other, every system on a fresh "
        "database. Produced by `scripts/queue-bench.sh"
        + (" --quick" if doc["mode"] == "quick" else "")
        + "`; the raw runs are in the `.json` beside this file."
    )
    out.append("")
    out.append("Peer versions: " + ", ".join(f"{k} {v}" for k, v in doc["peers"].items()) + ".")
    out.append("")
    out.append(
        "PostgreSQL settings: "
        + ", ".join(f"`{k}` = {v}" for k, v in sorted(pg["settings"].items()))
        + "."
    )
    out.append("")
    out.append("## What is measured")
    out.append("")
    meth = doc["method"]
    out.append(
        f"- Each run queues N no-op jobs in bulk (not timed), `VACUUM ANALYZE`s, then W workers "
        f"claim and complete until the queue is drained, {meth['measure_large']:,} completions "
        f"(queues of {meth['large_rows_from']:,} rows and more), or {meth['max_secs']} s have "
        "passed, whichever comes first (column `measured` of the JSON: `drain`, "
        "`first_completions`, `time_cap`). tasks/s = tasks completed / seconds from the "
        "workers' start until the last one stopped."
    )
    out.append(
        "- **Claim latency** is the time of each fetch call as the worker makes it "
        "(Constellation: `Queue::complete_and_claim`, which completes the previous batch in "
        "the same statement, or above batch 1 `Queue::complete` and `Queue::claim` run at once; "
        "`Queue::claim` alone for a worker's first batch; graphile_worker: its "
        "`get_job`/`batch_get_jobs` "
        "statement; PgQueuer: `Queries.dequeue`; Procrastinate: `JobManager.fetch_job`), "
        "counting only fetches that returned work. With batch 64 one claim brings up to 64 "
        "tasks, so its latency is per batch."
    )
    out.append(
        "- Constellation queues tile tasks in jobs of 10 000 tiles, each with its finalize "
        "task (the drain counts those too): a claim joins the job and tile rows and a "
        "completion updates the job's progress, moves the rows to history and appends an "
        "event, all as in production."
    )
    out.append(
        "- **Long transaction**: a separate connection to the run's database runs `BEGIN; "
        "SELECT txid_current();` before the workers start and stays open until they stop, so "
        "no row deleted or updated during the run can be pruned or vacuumed, and index "
        "entries of dead rows cannot be marked dead for later scans."
    )
    if pg["settings"].get("autovacuum") == "off":
        out.append(
            "- `autovacuum` is off on this server, so no run is vacuumed, with or without the "
            "long transaction; what the long transaction adds is that dead row versions cannot "
            "be pruned and their index entries cannot be marked dead."
        )
    out.append(
        "- graphile_worker's worker in its default (direct) mode hands its slots a fetch signal "
        "per poll tick (1 s) or new-job notification, so a backlog queued before it starts "
        "drains at about W jobs per second; batch 1 therefore runs the library's own `get_job` "
        "and `complete_job` in W loops, and batch 64 its worker with the local queue."
    )
    out.append(
        "- The Rust systems run their W workers as tokio tasks in one process; PgQueuer and "
        "Procrastinate run theirs as asyncio tasks in one Python process. Every process shares "
        "the machine's cores with PostgreSQL."
    )
    out.append(
        f"- Queues of {meth['large_rows_from']:,} rows and more are filled once per system into "
        "a template database and copied for each run (`CREATE DATABASE … TEMPLATE … STRATEGY "
        "FILE_COPY`); smaller ones are filled per run. A `CHECKPOINT` precedes every run, and "
        "every run waits first until no `rustc` is running (the machine is shared), up to "
        f"{meth['rustc_wait_secs']} s."
    )
    out.append("")
    w_shown = max(workers_set)
    out.append(f"Settings per system, as each driver reports them for W={w_shown}:")
    out.append("")
    for s, b in present:
        r = next(
            (r for r in runs if r["system"] == s and r["batch"] == b and r["workers"] == w_shown),
            next(r for r in runs if r["system"] == s and r["batch"] == b),
        )
        out.append(f"- **{label(s, b)}**: {r['settings']}")
    out.append("")
    out.append("## Results")
    out.append("")
    rounds = doc["method"].get("rounds", 1)
    out.append(
        "tasks/s (higher is better); claim p50 / p99 in ms (lower is better)"
        + (
            f"; each cell is the best of {rounds} rounds of the whole matrix (the round with "
            "the highest tasks/s, its latencies with it; the JSON keeps every run)."
            if rounds > 1
            else "."
        )
    )
    out.append("")
    for rows in rows_set:
        for long_txn in (False, True):
            if not any(r["queued_rows"] == rows and r["long_txn"] == long_txn for r in runs):
                continue
            out.append(
                f"### {rows:,} queued rows, " + ("with a long-running transaction open" if long_txn else "no long transaction")
            )
            out.append("")
            head = "| system | " + " | ".join(f"W={w} tasks/s | p50 | p99" for w in workers_set) + " |"
            out.append(head)
            out.append("|---|" + "---:|---:|---:|" * len(workers_set))
            for s, b in present:
                cells = []
                for w in workers_set:
                    r = find(runs, s, b, w, rows, long_txn)
                    if r is None:
                        cells += ["–", "–", "–"]
                    else:
                        rate = fmt_rate(r["tasks_per_sec"])
                        if r.get("measured") != "drain":
                            rate += "¹" if r.get("measured") == "time_cap" else "²"
                        cells += [rate, fmt_ms(r["claim_p50_ms"]), fmt_ms(r["claim_p99_ms"])]
                out.append(f"| {label(s, b)} | " + " | ".join(cells) + " |")
            out.append("")
    out.append(
        f"¹ stopped by the {meth['max_secs']} s cap before the queue was drained; "
        f"² stopped after the first {meth['measure_large']:,} completions."
    )
    out.append("")
    out.append("## Who leads")
    out.append("")
    out.append(
        "Constellation's tasks/s divided by the best peer's at the same batch class "
        "(batch 1 against graphile_worker's loop, PgQueuer at batch 1 and Procrastinate; "
        "batch 64 against graphile_worker's local queue and PgQueuer at batch 64). Above 1: "
        "Constellation leads."
    )
    out.append("")
    out.append("| queued rows | long txn | W | batch 1: best peer | ratio | batch 64: best peer | ratio |")
    out.append("|---:|---|---:|---|---:|---|---:|")
    leads = {1: [0, 0], 64: [0, 0]}
    for rows in rows_set:
        for long_txn in (False, True):
            for w in workers_set:
                cells = []
                for b in (1, 64):
                    ours = find(runs, "constellation", b, w, rows, long_txn)
                    peers = [
                        find(runs, s, pb, w, rows, long_txn)
                        for (s, pb) in ORDER
                        if s != "constellation" and pb == b
                    ]
                    peers = [p for p in peers if p is not None]
                    if ours is None or not peers:
                        cells += ["–", "–"]
                        continue
                    best = max(peers, key=lambda p: p["tasks_per_sec"])
                    ratio = ours["tasks_per_sec"] / best["tasks_per_sec"]
                    leads[b][1] += 1
                    if ratio > 1:
                        leads[b][0] += 1
                    cells += [f"{best['system']} ({fmt_rate(best['tasks_per_sec'])})", f"{ratio:.2f}"]
                if cells.count("–") == 4:
                    continue
                out.append(
                    f"| {rows:,} | {'yes' if long_txn else 'no'} | {w} | " + " | ".join(cells) + " |"
                )
    out.append("")
    out.append(
        f"Constellation leads in {leads[1][0]} of {leads[1][1]} configurations at batch 1 and "
        f"{leads[64][0]} of {leads[64][1]} at batch 64."
    )
    out.append("")
    out.extend(WHY)
    out.append("### Effect of the long transaction")
    out.append("")
    out.append(
        "tasks/s with the long transaction open divided by tasks/s without, per queue size, "
        "median over the worker counts (below 1: slower with it)."
    )
    out.append("")
    out.append("| system | " + " | ".join(f"{rows:,} rows" for rows in rows_set) + " |")
    out.append("|---|" + "---:|" * len(rows_set))
    for s, b in present:
        cells = []
        for rows in rows_set:
            ratios = []
            for w in workers_set:
                with_txn = find(runs, s, b, w, rows, True)
                without = find(runs, s, b, w, rows, False)
                if with_txn and without and without["tasks_per_sec"] > 0:
                    ratios.append(with_txn["tasks_per_sec"] / without["tasks_per_sec"])
            cells.append(f"{statistics.median(ratios):.2f}" if ratios else "–")
        out.append(f"| {label(s, b)} | " + " | ".join(cells) + " |")
    out.append("")
    if diagnostics:
        out.append("## Diagnostic: Constellation with one tile per job")
        out.append("")
        out.append(
            "The same Constellation runs with every tile in a job of its own (no two "
            "completions share a job's progress or finalize dependency; the drain then also "
            "has one finalize task per tile), beside the matrix's run of the same "
            "configuration (jobs of 10 000 tiles)."
        )
        out.append("")
        out.append("| variant | W | batch | long txn | tasks/s | p50 | p99 |")
        out.append("|---|---:|---:|---|---:|---:|---:|")
        # Per configuration, the matrix's run once and then each round's diagnostic run.
        order = []
        for d in diagnostics:
            key = (d["batch"], d["workers"], d["queued_rows"], d["long_txn"])
            if key not in order:
                order.append(key)
        for key in order:
            batch, workers, rows, long_txn = key
            base = find(runs, "constellation", batch, workers, rows, long_txn)
            same = [d for d in diagnostics
                    if (d["batch"], d["workers"], d["queued_rows"], d["long_txn"]) == key]
            for name, r in [("jobs of 10 000 tiles (matrix)", base)] + [(d["variant"], d) for d in same]:
                if r is None:
                    continue
                out.append(
                    f"| {name} | {r['workers']} | {r['batch']} | {'yes' if r['long_txn'] else 'no'} "
                    f"| {fmt_rate(r['tasks_per_sec'])} | {fmt_ms(r['claim_p50_ms'])} "
                    f"| {fmt_ms(r['claim_p99_ms'])} |"
                )
        out.append("")
    spread = spreads(runs + diagnostics)
    loads = [r["load1"] for r in doc["runs"] if r.get("load1") is not None]
    waits = [r.get("rustc_wait_secs", 0) for r in doc["runs"]]
    busy = sum(1 for r in doc["runs"] if r.get("rustc_running_at_start"))
    out.append("## Conditions")
    out.append("")
    if loads:
        out.append(
            f"- 1-minute load average at the start of the runs: min {min(loads):.2f}, median "
            f"{statistics.median(loads):.2f}, max {max(loads):.2f} (on {m['cores']} cores; "
            "the machine is shared, so other work ran beside some runs)."
        )
    if spread:
        out.append(
            f"- Run-to-run spread of tasks/s between rounds of the same configuration: median "
            f"{statistics.median(spread) * 100:.0f} %, max {max(spread) * 100:.0f} % "
            "((best − worst) / best): differences smaller than that are noise."
        )
    out.append(
        f"- Waiting for `rustc` to finish: {sum(waits)} s in all; {busy} run(s) started with "
        "a `rustc` still running after the wait limit."
    )
    out.append(
        f"- Benchmark wall time: {doc['wall_secs'] / 60:.1f} min ({doc['started']} to "
        f"{doc['finished']})."
    )
    if failed:
        out.append("")
        out.append("## Runs that failed")
        out.append("")
        out.append(
            "Kept out of the tables (a configuration's cell then shows its other round, if that "
            "one succeeded); the drivers stop at the first error, as a worker would surface it."
        )
        out.append("")
        for r in failed:
            out.append(
                f"- {r.get('system')} batch {r.get('batch')}, W={r.get('workers')}, "
                f"{r.get('queued_rows')} rows, long txn {r.get('long_txn')}: `{r['error']}`"
            )
    out.append("")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--mode", required=True)
    p.add_argument("--max-secs", type=float, required=True)
    p.add_argument("--measure-large", type=int, required=True)
    p.add_argument("--large-rows-from", type=int, required=True)
    p.add_argument("--rustc-wait-secs", type=int, required=True)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--started", required=True)
    p.add_argument("--finished", required=True)
    a = p.parse_args()

    runs = [json.loads(line) for line in Path(a.runs).read_text().splitlines() if line.strip()]
    cores = os.cpu_count() or 0
    cpu = cpu_model()
    started = dt.datetime.fromisoformat(a.started)
    finished = dt.datetime.fromisoformat(a.finished)
    doc = {
        "benchmark": "queue",
        "mode": a.mode,
        "date": started.date().isoformat(),
        "started": a.started,
        "finished": a.finished,
        "wall_secs": (finished - started).total_seconds(),
        "machine": {
            "name": machine_slug(cpu, cores),
            "cpu": cpu,
            "cores": cores,
            "memory_gib": memory_gib(),
            "os": os_name(),
            "kernel": platform.release(),
        },
        "postgresql": asyncio.run(postgres_info()),
        "peers": peer_versions(),
        "method": {
            "max_secs": a.max_secs,
            "measure_large": a.measure_large,
            "large_rows_from": a.large_rows_from,
            "rustc_wait_secs": a.rustc_wait_secs,
            "rounds": a.rounds,
        },
        "runs": runs,
    }
    name = os.environ.get("QB_MACHINE") or doc["machine"]["name"]
    out = Path(a.out_dir) / (f"queue-{name}" + ("-quick" if a.mode == "quick" else ""))
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(doc))
    print(out.with_suffix(".md"))


if __name__ == "__main__":
    main()
