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
-- rows still to run (complete.sql).
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
ORDER BY c.id
