-- The safety net of the finalize dependency, run with every reap: finalize tasks still
-- blocked although no tile task of their job is left in the hot table (every tile succeeded;
-- a failed or cancelled tile ends the job and takes the finalize row with it). This happens
-- only when a completion's recheck (finalize_unblock.sql) never ran: its worker died between
-- the commit and the recheck, or the recheck failed. Reads the snapshot only: a tile row
-- whose deletion is not committed yet keeps its job blocked until the next sweep (or the
-- recheck). Through task_blocked_idx (one row per unfinished job at most); the tile probe
-- starts at the job's highest id, like the completions' (and matches the job as a range for
-- the same reason). Same events as the recheck.
WITH unblocked AS (
    UPDATE task f
    SET state = 'queued', run_at = now()
    WHERE f.state = 'blocked' AND f.kind = 'finalize'
      AND (SELECT t.id FROM task t
           WHERE t.job_id BETWEEN f.job_id AND f.job_id AND t.kind = 'tile'
           ORDER BY t.job_id DESC, t.id DESC
           LIMIT 1) IS NULL
    RETURNING f.id, f.job_id
    -- followed by finalize_events.sql
