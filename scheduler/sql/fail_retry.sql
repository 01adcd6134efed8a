-- A retryable failure of worker $1's run ($2 id, $3 attempt) with error $4: back to the
-- queue after an exponential backoff with jitter, base $5 s, cap $6 s, scaled by a random
-- factor in [0.5, 1) so that tasks failing together do not retry together.
-- Announced as a task_failed event. Matches nothing when fenced out or when the attempts
-- are exhausted.
WITH retried AS (
UPDATE task
SET state = 'queued',
    worker_id = NULL,
    lease_expires_at = NULL,
    claimed_at = NULL,
    error = $4,
    run_at = now() + make_interval(
        secs => least($6, $5 * power(2, attempt - 1)) * (0.5 + random() * 0.5))
WHERE id = $2 AND attempt = $3 AND worker_id = $1 AND state = 'running'
  AND attempt < max_attempts
RETURNING id, job_id, tile_index, attempt, run_at
), announced AS (
    INSERT INTO event (job_id, kind, payload)
    SELECT job_id, 'task_failed',
           jsonb_build_object('task_id', id, 'tile_index', tile_index, 'attempt', attempt,
                              'error', $4::text, 'retry_at', run_at)
    FROM retried
)
SELECT run_at FROM retried
