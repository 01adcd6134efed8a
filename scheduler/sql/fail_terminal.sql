-- Move a running task ($1) to history as failed with error $2. When $3 (worker) is not null
-- the run is fenced on ($1, $4 attempt, $3 worker). Returns the job to fail and whether the
-- task was a tile (the job row counts failed tiles: end_job.sql).
WITH gone AS (
    DELETE FROM task
    WHERE id = $1 AND state = 'running'
      AND ($3::uuid IS NULL OR (worker_id = $3 AND attempt = $4))
    RETURNING id, job_id, kind, tile_index, priority, attempt, max_attempts, claimed_at,
              worker_id
), history AS (
    INSERT INTO task_history (id, job_id, kind, tile_index, state, priority, attempt,
                              max_attempts, claimed_at, worker_id, error)
    SELECT id, job_id, kind, tile_index, 'failed', priority, attempt, max_attempts,
           claimed_at, worker_id, $2
    FROM gone
), announced AS (
    INSERT INTO event (job_id, kind, payload)
    SELECT job_id, 'task_failed',
           jsonb_build_object('task_id', id, 'tile_index', tile_index, 'attempt', attempt,
                              'error', $2::text, 'retry_at', NULL)
    FROM gone
)
SELECT job_id, kind = 'tile' AS tile FROM gone
