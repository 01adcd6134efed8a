"""Shared parts of the Python queue-benchmark peer drivers.

Arguments, the per-run database (created from ``DATABASE_URL``'s server, optionally copied from
a pre-filled template database, dropped at the end), the long-running transaction, percentiles,
the load average and the JSON line: the same as Constellation's ``queue_bench`` example.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import uuid

import asyncpg

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/test"


def parse_args(description: str, default_batch: int) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--batch", type=int, default=default_batch)
    p.add_argument("--measure", type=int, default=None, help="stop after this many completions")
    p.add_argument("--max-secs", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--long-txn", action="store_true")
    p.add_argument("--template", default=None, help="pre-filled database to copy (made if missing)")
    p.add_argument("--prepare-only", action="store_true", help="make the template and stop")
    a = p.parse_args()
    if a.workers < 1 or a.rows < 1 or a.batch < 1:
        p.error("workers, rows and batch must be at least 1")
    return a


def admin_url() -> str:
    return os.environ.get("DATABASE_URL", DEFAULT_URL)


def url_of(name: str) -> str:
    base, _, _ = admin_url().rpartition("/")
    return f"{base}/{name}"


async def admin_sql(sql: str) -> None:
    conn = await asyncpg.connect(admin_url())
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def database_exists(name: str) -> bool:
    conn = await asyncpg.connect(admin_url())
    try:
        return await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name) is not None
    finally:
        await conn.close()


async def vacuum_analyze(name: str) -> None:
    conn = await asyncpg.connect(url_of(name))
    try:
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def prepare_database(system: str, args: argparse.Namespace, fill) -> str | None:
    """Create this run's database: a copy of the template (filled first when missing) or a
    fresh one filled here. ``fill(name, rows)`` installs the schema and queues the rows.
    With ``--prepare-only`` only the template is made, and None returned."""
    name = f"qb_{system}_{uuid.uuid4().hex}"
    if args.template:
        if not await database_exists(args.template):
            await admin_sql(f"CREATE DATABASE {args.template}")
            try:
                await fill(args.template, args.rows)
                await vacuum_analyze(args.template)
            except BaseException:
                await admin_sql(f"DROP DATABASE IF EXISTS {args.template} WITH (FORCE)")
                raise
        if args.prepare_only:
            return None
        await admin_sql(f"CREATE DATABASE {name} TEMPLATE {args.template} STRATEGY FILE_COPY")
    else:
        await admin_sql(f"CREATE DATABASE {name}")
        try:
            await fill(name, args.rows)
            await vacuum_analyze(name)
        except BaseException:
            await drop_database(name)
            raise
    return name


async def drop_database(name: str) -> None:
    await admin_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def open_long_txn(name: str):
    """A connection holding a transaction with an xid: the xmin horizon stays behind it."""
    conn = await asyncpg.connect(url_of(name))
    await conn.execute("BEGIN")
    await conn.fetchval("SELECT txid_current()")
    return conn


async def close_long_txn(conn) -> None:
    if conn is not None:
        await conn.execute("ROLLBACK")
        await conn.close()


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not sorted_values:
        return None
    rank = math.ceil(p / 100.0 * len(sorted_values))
    return sorted_values[min(max(rank, 1), len(sorted_values)) - 1]


def load1() -> float | None:
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except OSError:
        return None


def report(
    *,
    system: str,
    settings: str,
    args: argparse.Namespace,
    tasks: int,
    secs: float,
    timed_out: bool,
    claim_ms: list[float],
    load1_at_start: float | None,
) -> None:
    claim_ms = sorted(claim_ms)
    print(
        json.dumps(
            {
                "system": system,
                "settings": settings,
                "workers": args.workers,
                "queued_rows": args.rows,
                "long_txn": args.long_txn,
                "batch": args.batch,
                "measured": (
                    "drain"
                    if tasks >= args.rows
                    else "time_cap"
                    if timed_out
                    else "first_completions"
                ),
                "tasks": tasks,
                "secs": secs,
                "tasks_per_sec": tasks / secs,
                "claim_p50_ms": percentile(claim_ms, 50),
                "claim_p99_ms": percentile(claim_ms, 99),
                "claims": len(claim_ms),
                "load1": load1_at_start,
            }
        ),
        flush=True,
    )


async def _cli(argv: list[str]) -> None:
    """Small admin commands for scripts/queue-bench.sh: ``checkpoint``, ``drop NAME...``,
    ``drop-ours`` (every database the benchmark makes: ``qb_*_<uuid>`` and ``qbt_*``)."""
    if argv[:1] == ["checkpoint"]:
        await admin_sql("CHECKPOINT")
    elif argv[:1] == ["drop"]:
        for name in argv[1:]:
            await drop_database(name)
    elif argv[:1] == ["drop-ours"]:
        conn = await asyncpg.connect(admin_url())
        try:
            names = await conn.fetch(
                r"SELECT datname FROM pg_database WHERE datname ~ "
                r"'^(qb_(constellation|graphile|pgqueuer|procrastinate)_[0-9a-f]{32}|qbt_[a-z0-9_]+)$'"
            )
        finally:
            await conn.close()
        for row in names:
            await drop_database(row["datname"])
    else:
        raise SystemExit("usage: qbcommon.py checkpoint | drop NAME... | drop-ours")


if __name__ == "__main__":
    import asyncio
    import sys

    asyncio.run(_cli(sys.argv[1:]))
