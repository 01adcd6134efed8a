-- Tile completions no longer touch the job row (it serialised every completion of a job on
-- one row lock until the commit's WAL flush). Progress is counted in a sharded table beside
-- it, the finalize task is unblocked by looking at the job's remaining tile rows, and the
-- job row keeps what job lists show without reading history: tiles failed and the output.
-- See scheduler/README.md ("Progress and the finalize dependency").

-- Tile tasks that succeeded since the job's count was last folded onto job.tiles_succeeded,
-- one row per (job, shard); a completion adds to the shard of its backend
-- (pg_backend_pid() % 64), so concurrent completions of one job update different rows. A
-- job's progress is job.tiles_succeeded + the sum of its rows here (at most 64); its rows
-- are folded onto the job row, and deleted, when the job ends.
CREATE TABLE job_progress (
    job_id uuid NOT NULL,
    shard  integer NOT NULL,
    tiles  integer NOT NULL,
    PRIMARY KEY (job_id, shard)
) WITH (
    fillfactor = 50,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000
);

-- Tile tasks of the job that failed for good (reset when the job is retried), and the
-- finalize task's output once it succeeded: job lists read these from the job row.
ALTER TABLE job
    ADD COLUMN tiles_failed integer NOT NULL DEFAULT 0,
    ADD COLUMN output jsonb;

UPDATE job j
SET tiles_failed = f.n
FROM (SELECT job_id, count(*)::int AS n
      FROM task_history
      WHERE kind = 'tile' AND state = 'failed'
      GROUP BY job_id) f
WHERE f.job_id = j.id;

UPDATE job j
SET output = h.output
FROM task_history h
WHERE h.id = j.finalize_task_id AND h.state = 'succeeded';

-- A job's tasks by id: a completion asks whether any other tile task of its job is left,
-- from the job's highest id down (tiles are claimed in id order, so the first entry is
-- usually a live queued row, not one of the many completed ones whose index entries may
-- not be prunable yet). Replaces the index on job_id alone (cancel, listing use this one).
CREATE INDEX task_job_id_idx ON task (job_id, id);
DROP INDEX task_job_idx;

-- Blocked finalize tasks (one per unfinished job at most): the sweep beside the reaper reads
-- them without scanning the backlog.
CREATE INDEX task_blocked_idx ON task (job_id) WHERE state = 'blocked';
