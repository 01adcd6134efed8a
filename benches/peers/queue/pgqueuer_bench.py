"""Queue benchmark peer driver for PgQueuer: queue N no-op jobs in bulk, run W QueueManagers
(one asyncpg connection each, in one process on uvloop) with ``mode=drain`` and
``batch_size=B`` until drained (or M completed), print one JSON line with tasks/s and the
latency of each ``dequeue`` call that returned jobs.

    python pgqueuer_bench.py [--workers W] [--rows N] [--batch B] [--measure M] [--max-secs T]
                             [--long-txn] [--template NAME]
"""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg
import uvloop
from pgqueuer import AsyncpgDriver
from pgqueuer.qm import QueueManager
from pgqueuer.queries import Queries
from pgqueuer.types import QueueExecutionMode

import qbcommon

ENQUEUE_CHUNK = 10_000


async def fill(name: str, rows: int) -> None:
    conn = await asyncpg.connect(qbcommon.url_of(name))
    try:
        q = Queries(AsyncpgDriver(conn))
        await q.install()
        queued = 0
        while queued < rows:
            n = min(ENQUEUE_CHUNK, rows - queued)
            await q.enqueue(["noop"] * n, [None] * n, [0] * n)
            queued += n
    finally:
        await conn.close()


async def run(args, name: str) -> None:
    url = qbcommon.url_of(name)
    check = await asyncpg.connect(url)
    queued = await check.fetchval("SELECT count(*) FROM pgqueuer WHERE status = 'queued'")
    if queued != args.rows:
        raise SystemExit(f"{queued} jobs queued, {args.rows} expected")
    target = min(args.measure, queued) if args.measure else queued

    done = 0
    claim_ms: list[float] = []
    managers: list[QueueManager] = []

    def timed(dequeue):
        async def wrapper(*a, **kw):
            t = time.perf_counter()
            jobs = await dequeue(*a, **kw)
            if jobs:
                claim_ms.append((time.perf_counter() - t) * 1e3)
            return jobs

        return wrapper

    for _ in range(args.workers):
        conn = await asyncpg.connect(url)
        qm = QueueManager(Queries(AsyncpgDriver(conn)))
        qm.queries.dequeue = timed(qm.queries.dequeue)

        @qm.entrypoint("noop")
        async def noop(job) -> None:
            nonlocal done
            done += 1
            if args.measure and done >= target:
                for m in managers:
                    m.shutdown.set()

        managers.append(qm)

    long_txn = await qbcommon.open_long_txn(name) if args.long_txn else None
    load1_at_start = qbcommon.load1()
    timed_out = False

    async def timer() -> None:
        nonlocal timed_out
        await asyncio.sleep(args.max_secs)
        timed_out = True
        for m in managers:
            m.shutdown.set()

    t0 = time.perf_counter()
    timer_task = asyncio.create_task(timer()) if args.max_secs else None
    await asyncio.gather(
        *(qm.run(batch_size=args.batch, mode=QueueExecutionMode.drain) for qm in managers)
    )
    secs = time.perf_counter() - t0
    if timer_task is not None:
        timer_task.cancel()
    await qbcommon.close_long_txn(long_txn)
    left = await check.fetchval("SELECT count(*) FROM pgqueuer")
    await check.close()
    if done >= args.rows and left != 0:
        raise SystemExit(f"{left} jobs left after the drain")

    qbcommon.report(
        system="pgqueuer",
        settings=(
            f"{args.workers} QueueManager(s), one asyncpg connection each, one process on uvloop; "
            f"run(batch_size={args.batch}, mode=drain), max_concurrent_tasks unset (library "
            "default), completions logged through its JobStatusLogBuffer (flushes every "
            "batch_size jobs or on its timeout)"
        ),
        args=args,
        tasks=done,
        secs=secs,
        timed_out=timed_out,
        claim_ms=claim_ms,
        load1_at_start=load1_at_start,
    )


async def main() -> None:
    args = qbcommon.parse_args("PgQueuer queue benchmark", default_batch=10)
    name = await qbcommon.prepare_database("pgqueuer", args, fill)
    if name is None:
        return
    try:
        await run(args, name)
    finally:
        await qbcommon.drop_database(name)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    uvloop.run(main())
