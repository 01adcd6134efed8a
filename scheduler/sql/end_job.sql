-- Last step of ending job $1: set its final state $2 and error $3, once, with an event; $4
-- tile tasks of it failed for good here (1 when a tile's failure ends it, else 0). Its
-- progress shards fold onto the job row: its tasks were locked and moved first, so no tile
-- completion of the job is in flight or can come.
WITH folded AS (
    DELETE FROM job_progress g
    WHERE g.job_id = $1
      AND EXISTS (SELECT 1 FROM job WHERE id = $1 AND state IN ('queued', 'running'))
    RETURNING g.tiles
), ended AS (
    UPDATE job
    SET state = $2, error = $3, finished_at = now(), tiles_failed = tiles_failed + $4,
        tiles_succeeded = tiles_succeeded + (SELECT coalesce(sum(tiles), 0)::int FROM folded)
    WHERE id = $1 AND state IN ('queued', 'running')
    RETURNING id
), events AS (
    INSERT INTO event (job_id, kind, payload)
    SELECT id, 'job_' || $2, jsonb_build_object('error', $3::text) FROM ended
)
SELECT count(*) AS ended FROM ended
