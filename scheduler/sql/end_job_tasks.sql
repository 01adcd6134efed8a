-- Second step of ending job $1 (after its remaining task rows were locked in id order):
-- every task still in the hot table moves to history as cancelled, with reason $2.
WITH gone AS (
    DELETE FROM task
    WHERE job_id = $1
    RETURNING id, job_id, kind, tile_index, priority, attempt, max_attempts, claimed_at,
              worker_id
)
INSERT INTO task_history (id, job_id, kind, tile_index, state, priority, attempt,
                          max_attempts, claimed_at, worker_id, error)
SELECT id, job_id, kind, tile_index, 'cancelled', priority, attempt, max_attempts,
       claimed_at, worker_id, $2
FROM gone
