-- Claim and complete are one plpgsql function, complete_and_claim, and each is leaner.
--
-- Before, complete_and_claim called complete_tasks and claim_tasks, two more plpgsql
-- functions, and copied each one's rows out of its result into its own (RETURN QUERY over a
-- function materialises the rows twice and sets up a third function call). That nesting was
-- a tenth of the server time of a one-task complete_and_claim. Now the one function holds
-- both statements; Queue::complete calls it with n = 0 (complete only) and Queue::claim with
-- no completions (claim only), so every statement still has one definition.
--
-- The completion statement also sheds what one-task batches paid for on every call:
-- * the history rows take each run's output from the DELETE's RETURNING (the locked rows
--   carry it from the input), where a merge join re-read the input, sorted and made distinct;
-- * the rows come back unsorted: the function files finalize tasks and finished jobs apart,
--   and the statements that lock those lock them in id order themselves;
-- * the probe for another tile row of the job that is not being deleted (case (b)) runs
--   first, and the look for one visible in the snapshot (case (a)) only where it found
--   none, at a job's end: the two decide as before, in the same statement and snapshot.
-- And a claim can start at the worker's frontier ($7, $8, $9: the priority, run_at and id
-- where its last claim ended, kept by Queue), entering the claim index there instead of at
-- its head; see the claim below.
-- What the statements do, their locks and their fences are unchanged (0004, 0005 and 0008
-- argue for them).
--
-- complete_and_claim($1 worker, $2 task ids, $3 attempts, $4 outputs, $5 n, $6 lease in s,
--                    $7 $8 $9 the worker's frontier: priority, run_at, id, or NULLs)
DROP FUNCTION complete_and_claim(uuid, bigint[], integer[], jsonb[], bigint, double precision);
DROP FUNCTION complete_tasks(uuid, bigint[], integer[], jsonb[]);
DROP FUNCTION claim_tasks(uuid, bigint, double precision);

CREATE FUNCTION complete_and_claim(uuid, bigint[], integer[], jsonb[], bigint, double precision,
                                   integer, timestamptz, bigint)
RETURNS TABLE (
    completed bigint, recheck_job uuid,
    id bigint, job_id uuid, kind text, tile_index integer, attempt integer,
    max_attempts integer, lease_expires_at timestamptz,
    recipe text, params jsonb, inputs jsonb, trace_context jsonb,
    x_px integer, y_px integer, width_px integer, height_px integer,
    priority integer, run_at timestamptz
)
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan
AS $fn$
#variable_conflict use_column
DECLARE
    r record;
    -- Finalize tasks whose job's last tiles were completed here (case (a) of 0004).
    unblock_ids bigint[];
    -- Jobs whose finalize task was completed here.
    finished_jobs uuid[];
    job_queued boolean;
    -- Jobs of this claim that were still queued when it read them.
    starting uuid[];
    -- The rows a claim locked, to be claimed.
    next_ids bigint[] := '{}';
BEGIN
    IF cardinality($2) > 0 THEN
        FOR r IN
            WITH input AS (
                SELECT * FROM unnest($2::bigint[], $3::int[], $4::jsonb[]) AS i(id, attempt, output)
            ), locked AS (
                SELECT t.id, i.output
                FROM task t
                JOIN input i ON i.id = t.id
                WHERE t.attempt = i.attempt AND t.worker_id = $1 AND t.state = 'running'
                ORDER BY t.id
                FOR UPDATE OF t
            ), done AS (
                DELETE FROM task t
                USING locked l
                WHERE t.id = l.id
                RETURNING t.id, t.job_id, t.kind, t.tile_index, t.priority, t.attempt,
                          t.max_attempts, t.claimed_at, t.worker_id, l.output
            ), history AS (
                INSERT INTO task_history (id, job_id, kind, tile_index, state, priority, attempt,
                                          max_attempts, claimed_at, worker_id, output)
                SELECT d.id, d.job_id, d.kind, d.tile_index, 'succeeded', d.priority, d.attempt,
                       d.max_attempts, d.claimed_at, d.worker_id, d.output
                FROM done d
            ), per_job AS (
                SELECT job_id,
                       (count(*) FILTER (WHERE kind = 'tile'))::int AS tiles,
                       bool_or(kind = 'finalize') AS finalized,
                       array_agg(id) AS ids,
                       coalesce(array_agg(tile_index ORDER BY tile_index)
                                    FILTER (WHERE kind = 'tile'), '{}') AS tile_indices
                FROM done
                GROUP BY job_id
            ), counted AS (
                -- Progress, on this backend's shard (0003), jobs in id order.
                INSERT INTO job_progress AS g (job_id, shard, tiles)
                SELECT job_id, pg_backend_pid() % 64, tiles
                FROM per_job
                WHERE tiles > 0
                ORDER BY job_id
                ON CONFLICT (job_id, shard) DO UPDATE SET tiles = g.tiles + excluded.tiles
            ), tile_jobs AS (
                -- Per job with tiles completed here: its progress with them, and another tile
                -- row of the job that is neither deleted nor being deleted, if any (the probe
                -- of case (b), from the highest id down: 0005).
                SELECT p.job_id, p.tiles, p.ids, p.tile_indices, j.tiles_total,
                       j.finalize_task_id,
                       j.tiles_succeeded + p.tiles
                           + coalesce((SELECT sum(g.tiles) FROM job_progress g
                                       WHERE g.job_id = p.job_id), 0)::int AS tiles_succeeded,
                       free.id AS free_tile
                FROM per_job p
                JOIN job j ON j.id = p.job_id
                LEFT JOIN LATERAL (
                    SELECT t.id FROM task t
                    WHERE t.job_id BETWEEN p.job_id AND p.job_id
                      AND t.kind = 'tile' AND t.id <> ALL (p.ids)
                    ORDER BY t.job_id DESC, t.id DESC
                    LIMIT 1
                    FOR KEY SHARE OF t SKIP LOCKED
                ) free ON true
                WHERE p.tiles > 0
            ), ends AS (
                -- Jobs none of whose other tile rows is free: whether any is still visible in
                -- this statement's snapshot (being deleted by a concurrent completion: (b),
                -- a recheck after the commit) or none is (the job's last tiles: (a)). Until
                -- 0009 every completion looked for a visible row first and probed with the
                -- lock second; the order is reversed so that only a job's end pays for both.
                SELECT tj.job_id, tj.finalize_task_id,
                       (SELECT t.id FROM task t
                        WHERE t.job_id BETWEEN tj.job_id AND tj.job_id
                          AND t.kind = 'tile' AND t.id <> ALL (tj.ids)
                        ORDER BY t.job_id DESC, t.id DESC
                        LIMIT 1) IS NOT NULL AS others_visible
                FROM tile_jobs tj
                WHERE tj.free_tile IS NULL
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
            SELECT NULL, job_id, NULL, NULL FROM ends WHERE others_visible
            UNION ALL
            SELECT NULL, NULL, finalize_task_id, NULL FROM ends WHERE NOT others_visible
            UNION ALL
            SELECT NULL, NULL, NULL, job_id FROM per_job WHERE finalized
        LOOP
            IF r.unblock IS NOT NULL THEN
                unblock_ids := array_append(unblock_ids, r.unblock);
            ELSIF r.finished IS NOT NULL THEN
                finished_jobs := array_append(finished_jobs, r.finished);
            ELSE
                completed := r.task_id;
                recheck_job := r.recheck_job;
                RETURN NEXT;
            END IF;
        END LOOP;
        completed := NULL;
        recheck_job := NULL;

        IF unblock_ids IS NOT NULL THEN
            -- (a): no other tile row of the job was left: its finalize task becomes
            -- claimable with this commit (and by the claim below).
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
            -- Jobs whose finalize task completed here, locked in id order; their progress
            -- shards fold onto the job row and the job succeeds with the finalize output.
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
    END IF;

    IF $5 > 0 THEN
        -- The rows to claim, locked (the SKIP LOCKED fence of 0004). From the worker's
        -- frontier when it gave one: the index is entered at the frontier's key, not at its
        -- head, so the entries of rows claimed before (dead, or while a long transaction is
        -- open, not yet removable) are not walked again. Where the frontier has fewer rows
        -- left than asked for, the rest come from the head, as every claim did before: a
        -- claim never comes back short while claimable rows are left.
        IF $9 IS NOT NULL THEN
            next_ids := ARRAY(
                SELECT t.id
                FROM task t
                WHERE t.state = 'queued' AND t.run_at <= now()
                  AND t.priority = $7 AND (t.run_at, t.id) > ($8, $9)
                ORDER BY t.priority DESC, t.run_at, t.id
                LIMIT $5
                FOR NO KEY UPDATE SKIP LOCKED);
        END IF;
        IF cardinality(next_ids) < $5 THEN
            -- Rows this transaction locked above are not skipped by SKIP LOCKED: excluded.
            next_ids := next_ids || ARRAY(
                SELECT t.id
                FROM task t
                WHERE t.state = 'queued' AND t.run_at <= now() AND t.id <> ALL (next_ids)
                ORDER BY t.priority DESC, t.run_at, t.id
                LIMIT $5 - cardinality(next_ids)
                FOR NO KEY UPDATE SKIP LOCKED);
        END IF;
    END IF;

    IF cardinality(next_ids) > 0 THEN
        FOR id, job_id, kind, tile_index, attempt, max_attempts, lease_expires_at, recipe,
            params, inputs, trace_context, x_px, y_px, width_px, height_px, priority, run_at,
            job_queued IN
            WITH claimed AS (
                UPDATE task t
                SET state = 'running',
                    attempt = t.attempt + 1,
                    worker_id = $1,
                    claimed_at = now(),
                    lease_expires_at = now() + make_interval(secs => $6)
                WHERE t.id = ANY (next_ids)
                RETURNING t.id, t.job_id, t.kind, t.tile_index, t.attempt, t.max_attempts,
                          t.lease_expires_at, t.priority, t.run_at
            )
            SELECT c.id, c.job_id, c.kind, c.tile_index, c.attempt, c.max_attempts,
                   c.lease_expires_at, j.recipe, j.params, j.inputs, j.trace_context,
                   tl.x_px, tl.y_px, tl.width_px, tl.height_px, c.priority, c.run_at,
                   j.state = 'queued'
            FROM claimed c
            JOIN job j ON j.id = c.job_id
            LEFT JOIN LATERAL (
                SELECT x_px, y_px, width_px, height_px FROM tile
                WHERE tile.job_id = c.job_id AND tile.tile_index = c.tile_index
            ) tl ON true
            ORDER BY c.id
        LOOP
            RETURN NEXT;
            IF job_queued AND NOT (job_id = ANY (coalesce(starting, '{}'))) THEN
                starting := array_append(starting, job_id);
            END IF;
        END LOOP;

        IF starting IS NOT NULL THEN
            -- The first claim of a job starts it (0008), jobs locked in id order.
            WITH locked AS (
                SELECT j.id
                FROM job j
                WHERE j.id = ANY (starting) AND j.state = 'queued'
                ORDER BY j.id
                FOR UPDATE OF j
            ), started AS (
                UPDATE job j
                SET state = 'running', started_at = now()
                FROM locked l
                WHERE j.id = l.id AND j.state = 'queued'
                RETURNING j.id
            )
            INSERT INTO event (job_id, kind, payload)
            SELECT id, 'job_running', '{}' FROM started ORDER BY id;
        END IF;
    END IF;
END
$fn$;
