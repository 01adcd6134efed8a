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


def find(runs: list[dict], system: str, batch: int, workers: int, rows: int, long_txn: bool):
    for r in runs:
        if (
            r.get("system") == system
            and r.get("batch") == batch
            and r.get("workers") == workers
            and r.get("queued_rows") == rows
            and r.get("long_txn") == long_txn
        ):
            return r
    return None


def markdown(doc: dict) -> str:
    runs = [r for r in doc["runs"] if "error" not in r]
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
        "(Constellation: `Queue::claim`; graphile_worker: its `get_job`/`batch_get_jobs` "
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
    out.append("tasks/s (higher is better); claim p50 / p99 in ms (lower is better).")
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
