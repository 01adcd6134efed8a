-- Worker $1 reports its in-flight runs (ids $2, attempts $3): extend their leases by $4 s
-- and stamp the worker. Returns the runs the worker no longer owns, each with whether its
-- task was cancelled (job cancelled or failed) -- the worker should stop those.
-- Rows are locked FOR NO KEY UPDATE: only deleters lock FOR UPDATE (see complete_tasks in
-- migrations/0004_claim_complete_functions.sql).
WITH input AS (
    SELECT * FROM unnest($2::bigint[], $3::int[]) AS i(id, attempt)
), locked AS (
    SELECT t.id
    FROM task t
    JOIN input i ON i.id = t.id
    WHERE t.attempt = i.attempt AND t.worker_id = $1 AND t.state = 'running'
    ORDER BY t.id
    FOR NO KEY UPDATE OF t
), extended AS (
    UPDATE task t
    SET lease_expires_at = now() + make_interval(secs => $4)
    FROM locked l
    WHERE t.id = l.id
    RETURNING t.id, t.attempt
), stamped AS (
    UPDATE worker SET heartbeat_at = now() WHERE id = $1
)
SELECT i.id, coalesce(h.state = 'cancelled', false) AS cancelled
FROM input i
LEFT JOIN extended e ON e.id = i.id AND e.attempt = i.attempt
LEFT JOIN task_history h ON h.id = i.id
WHERE e.id IS NULL
ORDER BY i.id
