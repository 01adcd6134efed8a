-- After a completion that returned job $1 in recheck_job committed (complete_tasks, (b)):
-- unblock the job's finalize task if no tile task of the job is left. The probe waits for
-- the deleters of the tile rows still locked (FOR KEY SHARE without SKIP LOCKED): a row whose
-- deleter committed is skipped, a row whose deleter rolled back is returned (its tile is
-- still to run, and its later completion takes over the wake-up). It holds no row lock while
-- it waits (LIMIT 1: it stops at the first row it locks), so it cannot deadlock. Idempotent:
-- only the statement that changes the row from blocked appends the events, a `progress` with
-- the final count (the completions' own events may have lagged it) and `finalize_queued`.
-- (The job is matched as a range so that only task_job_id_idx fits: see complete_tasks.)
WITH left_tile AS (
    SELECT t.id
    FROM task t
    WHERE t.job_id BETWEEN $1 AND $1 AND t.kind = 'tile'
    ORDER BY t.job_id DESC, t.id DESC
    LIMIT 1
    FOR KEY SHARE OF t
), unblocked AS (
    UPDATE task f
    SET state = 'queued', run_at = now()
    WHERE f.job_id = $1 AND f.kind = 'finalize' AND f.state = 'blocked'
      AND NOT EXISTS (SELECT 1 FROM left_tile)
    RETURNING f.id, f.job_id
    -- followed by finalize_events.sql
