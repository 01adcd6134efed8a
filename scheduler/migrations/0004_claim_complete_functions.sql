-- Claim and complete become functions, each run with one round trip as its own statement.
-- Both run on their cached generic plans (the SET clause of each function applies to the
-- statement inside it): planning either statement afresh costs more than running it for a
-- small batch, and PostgreSQL would otherwise keep making custom plans for them (with the
-- batch's size or arrays known, a custom plan always looks cheaper than the generic one).
-- Before, Queue::claim and Queue::complete set plan_cache_mode in a transaction of their own,
-- three round trips each (BEGIN and the setting, the statement, COMMIT).
-- A plpgsql function keeps its statements' plans for the life of the connection; the
-- statement is the one Queue ran before, unchanged. To change either, replace the function
-- in a later migration.

-- Claim up to $2 claimable tasks for worker $1 with a lease of $3 seconds.
-- The SKIP LOCKED CTE is the fence between claimers: a row locked by another claimer is
-- skipped, never waited for, so N workers drain the queue without claiming a row twice.
-- attempt is incremented here, so (id, attempt) names this run of the task.
-- The statement runs on its cached generic plan (Queue::claim), so it is written to need no
-- estimate of how many rows LIMIT $2 gives: the claimed ids are updated through the primary
-- key (`= ANY (ARRAY(…))`) and each task's tile is looked up by its key (LATERAL), where a
-- join would let the generic plan scan the task or tile table whole.
-- FOR NO KEY UPDATE (not FOR UPDATE): the claim only updates the row, and this lock does not
-- conflict with the FOR KEY SHARE probe with which a completion tells rows being deleted from
-- rows still to run (complete_tasks, below).
--
-- claim_tasks($1 worker, $2 n, $3 lease in seconds)
CREATE FUNCTION claim_tasks(uuid, bigint, double precision)
RETURNS TABLE (
    id bigint, job_id uuid, kind text, tile_index integer, attempt integer,
    max_attempts integer, lease_expires_at timestamptz,
    recipe text, params jsonb, inputs jsonb, trace_context jsonb,
    x_px integer, y_px integer, width_px integer, height_px integer
)
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan
AS $fn$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH next AS (
        SELECT id
        FROM task
        WHERE state = 'queued' AND run_at <= now()
        ORDER BY priority DESC, run_at, id
        LIMIT $2
        FOR NO KEY UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE task t
        SET state = 'running',
            attempt = t.attempt + 1,
            worker_id = $1,
            claimed_at = now(),
            lease_expires_at = now() + make_interval(secs => $3)
        WHERE t.id = ANY (ARRAY(SELECT id FROM next))
        RETURNING t.id, t.job_id, t.kind, t.tile_index, t.attempt, t.max_attempts,
                  t.lease_expires_at
    ), starting AS (
        -- Jobs this claim starts, locked in id order like every statement that locks several
        -- jobs (a claimed batch may span jobs).
        SELECT j.id
        FROM job j
        WHERE j.id IN (SELECT job_id FROM claimed) AND j.state = 'queued'
        ORDER BY j.id
        FOR UPDATE OF j
    ), started AS (
        -- The first claim of a job starts it (later claims find it running and change nothing).
        UPDATE job j
        SET state = 'running', started_at = now()
        FROM starting s
        WHERE j.id = s.id AND j.state = 'queued'
        RETURNING j.id
    ), started_event AS (
        INSERT INTO event (job_id, kind, payload)
        SELECT id, 'job_running', '{}' FROM started
    )
    SELECT c.id, c.job_id, c.kind, c.tile_index, c.attempt, c.max_attempts, c.lease_expires_at,
           j.recipe, j.params, j.inputs, j.trace_context,
           tl.x_px, tl.y_px, tl.width_px, tl.height_px
    FROM claimed c
    JOIN job j ON j.id = c.job_id
    LEFT JOIN LATERAL (
        SELECT x_px, y_px, width_px, height_px FROM tile
        WHERE tile.job_id = c.job_id AND tile.tile_index = c.tile_index
    ) tl ON true
    ORDER BY c.id;
END
$fn$;

-- Complete a batch for worker $1: task ids $2, attempts $3, outputs $4 (parallel arrays).
-- Fenced on (id, attempt, worker, running): a worker that lost its lease (reaped, re-claimed,
-- cancelled) matches nothing. Accepted rows leave the hot table for task_history.
-- Rows are locked in id order first (like every multi-task writer) to avoid lock cycles.
--
-- Tile completions do not touch the job row: progress goes to this backend's shard of
-- job_progress, and the finalize task is unblocked by looking at the job's tile rows left in
-- the hot table (a tile row leaves it when the tile succeeds; when a tile fails or is
-- cancelled its job ends and the finalize row leaves too). Returns one row per accepted task
-- (task_id) and one per job whose last tiles may have been completed by concurrent
-- transactions (recheck_job): the caller runs finalize_unblock.sql for those after the commit.
--
-- Why the finalize task is unblocked exactly once and never missed, under READ COMMITTED:
--
-- * Unblocking is `UPDATE … WHERE state = 'blocked'` on the one finalize row: whoever comes
--   second waits for the first's row lock and then finds it queued, so it happens once, and
--   only the statement that changed the row appends `finalize_queued`.
-- * (a) In this statement: when no other tile row of the job is visible in the statement's
--   snapshot, every other tile's deletion committed before it, and ours commit with the
--   unblock: the finalize task becomes claimable exactly when the last tile is done.
-- * (b) Otherwise the other tile rows still visible may be ones that concurrent completions
--   are deleting right now (each sees the other's row: neither can unblock in (a)). Those
--   rows are locked FOR UPDATE by their deleters (completion, terminal failure, cancel); no
--   other writer takes a lock that conflicts with FOR KEY SHARE (claim, heartbeat, reaper,
--   retry and release use FOR NO KEY UPDATE or plain updates). So the probe `FOR KEY SHARE
--   SKIP LOCKED` finds a row iff some other tile row is neither deleted (committed after our
--   snapshot: skipped too) nor being deleted. When it finds none, this statement returns the
--   job in recheck_job. The probe runs after this statement locked its own rows (it reads
--   per_job, an aggregate over them).
--   Take the completion M of the job whose probe ran last. Every other tile row is deleted
--   by some completion D. If D's probe ran before M's, D had locked its rows before then and
--   still holds them unless it committed: M's probe skips them either way. So M's probe finds
--   nothing: M unblocks in (a) or returns the job for the recheck. finalize_unblock.sql, run
--   after M committed, waits on the tile rows still locked (FOR KEY SHARE without SKIP
--   LOCKED): each one is gone once its deleter commits, and comes back if that deleter rolls
--   back (its tile is then still to be completed, by a later completion whose probe is
--   later than M's, which takes M's place in this argument). So once every tile succeeded,
--   the finalize task is unblocked by (a) or by a recheck.
-- * (c) A worker that dies between its commit and the recheck (or a recheck that fails) is
--   covered by the sweep that runs with every reap (finalize_sweep.sql).
--
-- complete_tasks($1 worker, $2 task ids, $3 attempts, $4 outputs)
CREATE FUNCTION complete_tasks(uuid, bigint[], integer[], jsonb[])
RETURNS TABLE (task_id bigint, recheck_job uuid)
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan
AS $fn$
#variable_conflict use_column
BEGIN
    RETURN QUERY
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
        -- Progress, on this backend's shard: concurrent completions of a job (other backends)
        -- update other rows. Jobs in id order, so two batches spanning the same jobs on a shared
        -- shard lock their rows in the same order.
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
                   + coalesce((SELECT sum(g.tiles) FROM job_progress g WHERE g.job_id = p.job_id),
                              0)::int AS tiles_succeeded,
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
    ), unblock AS (
        -- (a): no other tile row left: the finalize task becomes claimable with this commit.
        UPDATE task f
        SET state = 'queued', run_at = now()
        FROM tile_jobs tj
        WHERE tj.other_tile IS NULL AND f.id = tj.finalize_task_id AND f.state = 'blocked'
        RETURNING f.id, f.job_id
    ), job_locks AS (
        -- Jobs whose finalize task completed here (rare: once per job) are locked, in id order
        -- as every statement that locks several jobs does.
        SELECT j.id
        FROM job j
        WHERE j.id IN (SELECT job_id FROM per_job WHERE finalized)
        ORDER BY j.id
        FOR UPDATE OF j
    ), folded AS (
        -- Their progress shards fold onto the job row (every tile completion committed before
        -- the finalize task could be claimed, so no shard changes any more).
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
                + coalesce((SELECT sum(f.tiles) FROM folded f WHERE f.job_id = j.id), 0)::int
        FROM job_locks l, (SELECT DISTINCT ON (id) id, output FROM input) i
        WHERE j.id = l.id AND i.id = j.finalize_task_id
          AND j.state IN ('queued', 'running')
        RETURNING j.id
    ), events AS (
        INSERT INTO event (job_id, kind, payload)
        SELECT job_id, 'progress',
               jsonb_build_object('tiles_succeeded', tiles_succeeded, 'tiles_total', tiles_total,
                                  'tiles', to_jsonb(tile_indices))
        FROM tile_jobs
        UNION ALL
        SELECT job_id, 'finalize_queued', jsonb_build_object('task_id', id) FROM unblock
        UNION ALL
        SELECT id, 'job_succeeded', '{}' FROM succeeded
    )
    SELECT id AS task_id, NULL::uuid AS recheck_job FROM done
    UNION ALL
    SELECT NULL, job_id FROM probed WHERE NOT pending
    ORDER BY task_id, recheck_job;
END
$fn$;
