-- Retry job $1 (failed or cancelled, locked by the caller): its failed and cancelled tasks
-- leave history for the hot table. Each keeps its id and attempt count (a stale run of an
-- earlier attempt stays fenced out) and gets max_attempts more runs. The finalize task waits
-- for the tiles unless every tile already succeeded (the job's progress was folded onto its
-- row when it ended, so tiles_succeeded is exact here). No tile has failed any more.
WITH job_row AS (
    UPDATE job
    SET state = 'queued', error = NULL, finished_at = NULL, tiles_failed = 0
    WHERE id = $1
    RETURNING id, tiles_succeeded, tiles_total
), back AS (
    DELETE FROM task_history h
    USING job_row j
    WHERE h.job_id = j.id AND h.state IN ('failed', 'cancelled')
    RETURNING h.id, h.job_id, h.kind, h.tile_index, h.priority, h.attempt, h.max_attempts
), requeued AS (
    INSERT INTO task (id, job_id, kind, tile_index, state, priority, attempt, max_attempts,
                      run_at)
    OVERRIDING SYSTEM VALUE
    SELECT b.id, b.job_id, b.kind, b.tile_index,
           CASE WHEN b.kind = 'finalize' AND j.tiles_succeeded < j.tiles_total
                THEN 'blocked' ELSE 'queued' END,
           b.priority, b.attempt, b.attempt + b.max_attempts, now()
    FROM back b, job_row j
    RETURNING id
)
INSERT INTO event (job_id, kind, payload)
SELECT id, 'job_retried', jsonb_build_object('tasks', (SELECT count(*) FROM requeued))
FROM job_row
