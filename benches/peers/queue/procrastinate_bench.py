"""Queue benchmark peer driver for Procrastinate: queue N no-op jobs in bulk
(``batch_defer_async``), run W workers (``concurrency=1``, ``wait=False``) until drained (or M
completed, or T seconds passed), print one JSON line with tasks/s and the latency of each ``fetch_job`` call
that returned a job (Procrastinate fetches one job per call, so the batch is always 1).

    python procrastinate_bench.py [--workers W] [--rows N] [--measure M] [--max-secs T]
                                  [--long-txn] [--template NAME]
"""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg
import procrastinate
from procrastinate import worker as worker_module

import qbcommon

ENQUEUE_CHUNK = 10_000


def make_app(url: str, pool_size: int) -> procrastinate.App:
    return procrastinate.App(
        connector=procrastinate.PsycopgConnector(
            conninfo=url, min_size=pool_size, max_size=pool_size
        )
    )


async def fill(name: str, rows: int) -> None:
    app = make_app(qbcommon.url_of(name), 2)

    @app.task(name="noop")
    async def noop() -> None:
        return None

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        queued = 0
        while queued < rows:
            n = min(ENQUEUE_CHUNK, rows - queued)
            await noop.batch_defer_async(*([{}] * n))
            queued += n


async def run(args, name: str) -> None:
    url = qbcommon.url_of(name)
    check = await asyncpg.connect(url)
    queued = await check.fetchval("SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo'")
    if queued != args.rows:
        raise SystemExit(f"{queued} jobs queued, {args.rows} expected")
    target = min(args.measure, queued) if args.measure else queued

    # Each worker holds one connection for LISTEN and uses another to fetch and finish jobs.
    pool_size = 2 * args.workers + 2
    app = make_app(url, pool_size)
    done = 0
    claim_ms: list[float] = []
    workers: list[worker_module.Worker] = []

    @app.task(name="noop")
    async def noop() -> None:
        nonlocal done
        done += 1
        if args.measure and done >= target:
            for w in workers:
                w.stop()

    async with app.open_async():
        fetch_job = app.job_manager.fetch_job

        async def timed_fetch_job(*a, **kw):
            t = time.perf_counter()
            job = await fetch_job(*a, **kw)
            if job is not None:
                claim_ms.append((time.perf_counter() - t) * 1e3)
            return job

        app.job_manager.fetch_job = timed_fetch_job
        workers = [
            worker_module.Worker(
                app,
                name=f"worker-{i}",
                concurrency=1,
                wait=False,
                install_signal_handlers=False,
            )
            for i in range(args.workers)
        ]
        long_txn = await qbcommon.open_long_txn(name) if args.long_txn else None
        load1_at_start = qbcommon.load1()
        timed_out = False

        async def timer() -> None:
            nonlocal timed_out
            await asyncio.sleep(args.max_secs)
            timed_out = True
            for w in workers:
                w.stop()

        t0 = time.perf_counter()
        timer_task = asyncio.create_task(timer()) if args.max_secs else None
        await asyncio.gather(*(w.run() for w in workers))
        secs = time.perf_counter() - t0
        if timer_task is not None:
            timer_task.cancel()
        await qbcommon.close_long_txn(long_txn)

    left = await check.fetchval(
        "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
    )
    await check.close()
    if done >= args.rows and left != 0:
        raise SystemExit(f"{left} jobs left after the drain")

    qbcommon.report(
        system="procrastinate",
        settings=(
            f"{args.workers} Worker(concurrency=1, wait=False) instances in one asyncio process "
            f"(a Worker has one fetch loop, so W instances fetch W jobs at a time where one "
            f"Worker(concurrency=W) fetches one at a time), psycopg "
            f"pool of {pool_size} connections; defaults otherwise (listen_notify on, "
            "delete_jobs never: finished jobs stay in procrastinate_jobs as succeeded)"
        ),
        args=args,
        tasks=done,
        secs=secs,
        timed_out=timed_out,
        claim_ms=claim_ms,
        load1_at_start=load1_at_start,
    )


async def main() -> None:
    args = qbcommon.parse_args("Procrastinate queue benchmark", default_batch=1)
    if args.batch != 1:
        raise SystemExit("procrastinate fetches one job per call: --batch must be 1")
    name = await qbcommon.prepare_database("procrastinate", args, fill)
    if name is None:
        return
    try:
        await run(args, name)
    finally:
        await qbcommon.drop_database(name)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main())
