-- Last step of ending job $1: set its final state $2 and error $3, once, with an event.
WITH ended AS (
    UPDATE job
    SET state = $2, error = $3, finished_at = now()
    WHERE id = $1 AND state IN ('queued', 'running')
    RETURNING id
), events AS (
    INSERT INTO event (job_id, kind, payload)
    SELECT id, 'job_' || $2, jsonb_build_object('error', $3::text) FROM ended
)
SELECT count(*) AS ended FROM ended
