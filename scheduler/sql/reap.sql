-- Tasks whose lease expired (their worker stopped heartbeating) go back to the queue when
-- attempts remain; the attempt stays as the claim counted it. SKIP LOCKED: a row some
-- worker is heartbeating or completing right now is not expired, so it is never waited for.
-- Returns the requeued ids; exhausted rows are failed by a second step. Running rows are
-- found through task_claimed_idx (`claimed_at IS NOT NULL`: exactly the running rows, and
-- cleared on the way back to the queue). FOR NO KEY UPDATE:
-- only deleters lock FOR UPDATE (see complete_tasks in
-- migrations/0004_claim_complete_functions.sql).
WITH expired AS (
    SELECT id
    FROM task
    WHERE claimed_at IS NOT NULL AND state = 'running' AND lease_expires_at < now()
      AND attempt < max_attempts
    ORDER BY id
    FOR NO KEY UPDATE SKIP LOCKED
)
UPDATE task t
SET state = 'queued', worker_id = NULL, lease_expires_at = NULL, claimed_at = NULL,
    run_at = now(),
    error = 'lease expired on attempt ' || t.attempt
FROM expired e
WHERE t.id = e.id
RETURNING t.id
