-- Complete a batch for worker $1: task ids $2, attempts $3, outputs $4 (parallel arrays).
-- Fenced on (id, attempt, worker, running): a worker that lost its lease (reaped, re-claimed,
-- cancelled) matches nothing. Accepted rows leave the hot table for task_history.
-- Rows are locked in id order first (like every multi-task writer) to avoid lock cycles.
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
           coalesce(array_agg(tile_index ORDER BY tile_index) FILTER (WHERE kind = 'tile'),
                    '{}') AS tile_indices
    FROM done
    GROUP BY job_id
), job_locks AS (
    -- A batch may span jobs: their rows are locked in id order, as every statement that
    -- locks several jobs does, so two completions never wait on each other in a cycle.
    SELECT j.id
    FROM job j
    WHERE j.id IN (SELECT job_id FROM per_job)
    ORDER BY j.id
    FOR UPDATE OF j
), jobs AS (
    -- The job row serialises concurrent completions of one job: each statement adds its
    -- count to the latest value, so exactly one statement sees the last tile arrive.
    UPDATE job j
    SET tiles_succeeded = j.tiles_succeeded + p.tiles,
        state = CASE WHEN p.finalized THEN 'succeeded' ELSE j.state END,
        finished_at = CASE WHEN p.finalized THEN now() ELSE j.finished_at END
    FROM per_job p
    JOIN job_locks l ON l.id = p.job_id
    WHERE j.id = p.job_id AND j.state IN ('queued', 'running')
    RETURNING j.id, j.tiles_succeeded, j.tiles_total, j.finalize_task_id, p.tiles, p.finalized,
              p.tile_indices
), unblock AS (
    -- The statement that completed the last tile makes the finalize task claimable.
    UPDATE task f
    SET state = 'queued', run_at = now()
    FROM jobs
    WHERE jobs.tiles > 0 AND jobs.tiles_succeeded = jobs.tiles_total
      AND f.id = jobs.finalize_task_id AND f.state = 'blocked'
    RETURNING f.id, f.job_id
), events AS (
    INSERT INTO event (job_id, kind, payload)
    SELECT id, 'progress',
           jsonb_build_object('tiles_succeeded', tiles_succeeded, 'tiles_total', tiles_total,
                              'tiles', to_jsonb(tile_indices))
    FROM jobs WHERE tiles > 0
    UNION ALL
    SELECT job_id, 'finalize_queued', jsonb_build_object('task_id', id) FROM unblock
    UNION ALL
    SELECT id, 'job_succeeded', '{}' FROM jobs WHERE finalized
)
SELECT id FROM done ORDER BY id
