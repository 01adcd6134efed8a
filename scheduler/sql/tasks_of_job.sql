-- Every task of job $1: the hot rows and the finished ones, in id order.
SELECT id, kind, tile_index, state, attempt, max_attempts, worker_id, error, NULL::jsonb AS output
FROM task WHERE job_id = $1
UNION ALL
SELECT id, kind, tile_index, state, attempt, max_attempts, worker_id, error, output
FROM task_history WHERE job_id = $1
ORDER BY id
