-- The finalize task of job $1 (priority $2, attempts $3): blocked until every tile task
-- succeeded, or queued at once when the job has no tiles ($4 = tile count).
WITH finalize AS (
    INSERT INTO task (job_id, kind, state, priority, max_attempts)
    VALUES ($1, 'finalize', CASE WHEN $4::int = 0 THEN 'queued' ELSE 'blocked' END, $2, $3)
    RETURNING id
)
UPDATE job SET finalize_task_id = finalize.id FROM finalize WHERE job.id = $1
