-- complete_tasks runs the rare parts of a completion only when they have work: unblocking a
-- job's finalize task after its last tile (once per job) and ending a job whose finalize task
-- completed (once per job). Before, both were data-modifying CTEs of the one statement every
-- completion ran, and PostgreSQL sets up every CTE's plan nodes (a job update, a job_progress
-- delete, a task update, their locks and the event insert) on every execution, whether or
-- not a row reaches them: about a quarter of the server time of a one-task completion.
--
-- Now the statement that every completion runs (the fenced delete, the history rows, the
-- progress shard, the probes and the progress events: unchanged from 0004, where the
-- argument for exactly-once unblocking is written out) also names the finalize tasks to
-- unblock (case (a)) and the jobs whose finalize task it completed; a later statement of the
-- same function, so of the same transaction, does each of those when there is one.
-- * Unblocking (a) later in the transaction is the same as in the statement: the deletions
--   that made the job's last tile rows disappear commit with it, and `state = 'blocked'` on
--   the finalize row still makes it happen once.
-- * Ending the job in a later statement reads a newer snapshot of job_progress, which cannot
--   differ: every tile completion committed before the finalize task could be claimed.
-- The events keep their order within a job (progress, then finalize_queued, then
-- job_succeeded) and the function its signature and result.
--
-- complete_tasks($1 worker, $2 task ids, $3 attempts, $4 outputs)
CREATE OR REPLACE FUNCTION complete_tasks(uuid, bigint[], integer[], jsonb[])
RETURNS TABLE (task_id bigint, recheck_job uuid)
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan
AS $fn$
#variable_conflict use_column
DECLARE
    r record;
    -- Finalize tasks whose job's last tiles were completed here (case (a)).
    unblock_ids bigint[];
    -- Jobs whose finalize task was completed here.
    finished_jobs uuid[];
BEGIN
    FOR r IN
        WITH input AS (
            SELECT * FROM unnest($2::bigint[], $3::int[], $4::jsonb[]) AS i(id, attempt, output)
        ), locked AS (
            SELECT t.id
            FROM task t
            JOIN input i ON i.id = t.id
            WHERE t.attempt = i.attempt AND t.worker_id = $1 AND t.state = 'running'
            ORDER BY t.id
            FOR UPDATE OF t
        ), done AS (
            DELETE FROM task t
            USING locked l
            WHERE t.id = l.id
            RETURNING t.id, t.job_id, t.kind, t.tile_index, t.priority, t.attempt, t.max_attempts,
                      t.claimed_at, t.worker_id
        ), history AS (
            INSERT INTO task_history (id, job_id, kind, tile_index, state, priority, attempt,
                                      max_attempts, claimed_at, worker_id, output)
            SELECT d.id, d.job_id, d.kind, d.tile_index, 'succeeded', d.priority, d.attempt,
                   d.max_attempts, d.claimed_at, d.worker_id, i.output
            FROM done d
            JOIN (SELECT DISTINCT ON (id) id, output FROM input) i ON i.id = d.id
        ), per_job AS (
            SELECT job_id,
                   (count(*) FILTER (WHERE kind = 'tile'))::int AS tiles,
                   bool_or(kind = 'finalize') AS finalized,
                   array_agg(id) AS ids,
                   coalesce(array_agg(tile_index ORDER BY tile_index) FILTER (WHERE kind = 'tile'),
                            '{}') AS tile_indices
            FROM done
            GROUP BY job_id
        ), counted AS (
            -- Progress, on this backend's shard: concurrent completions of a job (other
            -- backends) update other rows. Jobs in id order, so two batches spanning the same
            -- jobs on a shared shard lock their rows in the same order.
            INSERT INTO job_progress AS g (job_id, shard, tiles)
            SELECT job_id, pg_backend_pid() % 64, tiles
            FROM per_job
            WHERE tiles > 0
            ORDER BY job_id
            ON CONFLICT (job_id, shard) DO UPDATE SET tiles = g.tiles + excluded.tiles
        ), tile_jobs AS (
            -- Per job with tiles completed here: its progress with them (what committed before
            -- this statement plus ours: never more than the truth), and another tile row of the job
            -- visible in this statement's snapshot, if any (from the highest id down: tiles are
            -- claimed in id order, so that is usually a live queued row). The job is matched as a
            -- range and named in the order so that only task_job_id_idx provides that order (with
            -- `job_id = …` a generic plan may walk the primary key backwards instead, across every
            -- later job's rows).
            SELECT p.job_id, p.tiles, p.ids, p.tile_indices, j.tiles_total, j.finalize_task_id,
                   j.tiles_succeeded + p.tiles
                       + coalesce((SELECT sum(g.tiles) FROM job_progress g
                                   WHERE g.job_id = p.job_id), 0)::int AS tiles_succeeded,
                   (SELECT t.id FROM task t
                    WHERE t.job_id BETWEEN p.job_id AND p.job_id
                      AND t.kind = 'tile' AND t.id <> ALL (p.ids)
                    ORDER BY t.job_id DESC, t.id DESC
                    LIMIT 1) AS other_tile
            FROM per_job p
            JOIN job j ON j.id = p.job_id
            WHERE p.tiles > 0
        ), probed AS (
            -- (b): whether some other tile row is neither deleted nor being deleted.
            SELECT tj.job_id, free.id IS NOT NULL AS pending
            FROM tile_jobs tj
            LEFT JOIN LATERAL (
                SELECT t.id FROM task t
                WHERE t.job_id BETWEEN tj.job_id AND tj.job_id
                  AND t.kind = 'tile' AND t.id <> ALL (tj.ids)
                ORDER BY t.job_id DESC, t.id DESC
                LIMIT 1
                FOR KEY SHARE OF t SKIP LOCKED
            ) free ON true
            WHERE tj.other_tile IS NOT NULL
    ), events AS (
        INSERT INTO event (job_id, kind, payload)
        SELECT job_id, 'progress',
               jsonb_build_object('tiles_succeeded', tiles_succeeded, 'tiles_total',
                                  tiles_total, 'tiles', to_jsonb(tile_indices))
        FROM tile_jobs
        ORDER BY job_id
    )
    SELECT id AS task_id, NULL::uuid AS recheck_job, NULL::bigint AS unblock,
           NULL::uuid AS finished
    FROM done
    UNION ALL
    SELECT NULL, job_id, NULL, NULL FROM probed WHERE NOT pending
    UNION ALL
    SELECT NULL, NULL, finalize_task_id, NULL FROM tile_jobs WHERE other_tile IS NULL
    UNION ALL
    SELECT NULL, NULL, NULL, job_id FROM per_job WHERE finalized
    ORDER BY task_id, recheck_job, unblock, finished
    LOOP
        IF r.unblock IS NOT NULL THEN
            unblock_ids := array_append(unblock_ids, r.unblock);
        ELSIF r.finished IS NOT NULL THEN
            finished_jobs := array_append(finished_jobs, r.finished);
        ELSE
            task_id := r.task_id;
            recheck_job := r.recheck_job;
            RETURN NEXT;
        END IF;
    END LOOP;

    IF unblock_ids IS NOT NULL THEN
        -- (a): no other tile row of the job was left: its finalize task becomes claimable
        -- with this commit.
        WITH unblock AS (
            UPDATE task f
            SET state = 'queued', run_at = now()
            WHERE f.id = ANY (unblock_ids) AND f.state = 'blocked'
            RETURNING f.id, f.job_id
        )
        INSERT INTO event (job_id, kind, payload)
        SELECT job_id, 'finalize_queued', jsonb_build_object('task_id', id)
        FROM unblock
        ORDER BY job_id;
    END IF;

    IF finished_jobs IS NOT NULL THEN
        -- Jobs whose finalize task completed here are locked in id order, as every statement
        -- that locks several jobs does; their progress shards fold onto the job row (every
        -- tile completion committed before the finalize task could be claimed, so no shard
        -- changes any more) and the job succeeds with the finalize task's output.
        WITH job_locks AS (
            SELECT j.id
            FROM job j
            WHERE j.id = ANY (finished_jobs)
            ORDER BY j.id
            FOR UPDATE OF j
        ), folded AS (
            DELETE FROM job_progress g
            USING job_locks l
            WHERE g.job_id = l.id
            RETURNING g.job_id, g.tiles
        ), succeeded AS (
            UPDATE job j
            SET state = 'succeeded',
                finished_at = now(),
                output = i.output,
                tiles_succeeded = j.tiles_succeeded
                    + coalesce((SELECT sum(f.tiles) FROM folded f WHERE f.job_id = j.id),
                               0)::int
            FROM job_locks l,
                 (SELECT DISTINCT ON (id) id, output
                  FROM unnest($2::bigint[], $4::jsonb[]) AS i(id, output)) i
            WHERE j.id = l.id AND i.id = j.finalize_task_id
              AND j.state IN ('queued', 'running')
            RETURNING j.id
        )
        INSERT INTO event (job_id, kind, payload)
        SELECT id, 'job_succeeded', '{}' FROM succeeded ORDER BY id;
    END IF;
END
$fn$;
