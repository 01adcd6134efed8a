-- A worker that has finished a batch completes it and claims its next batch in one call, so
-- one round trip and one commit instead of two of each (Queue::complete_and_claim). The
-- completion runs first, exactly as complete_tasks alone (fenced; refused runs are simply
-- not returned), then the claim, exactly as claim_tasks alone, in the same transaction:
-- * a finalize task unblocked by the completion (case (a) of complete_tasks) is already
--   claimable by the claim that follows;
-- * a detected deadlock rolls back both, so running the call again cannot count a completion
--   twice (fenced) nor lose a claim;
-- * `$5 = 0` (a draining worker) claims nothing.
-- Rows are of two kinds: a completion's (`completed` or `recheck_job` set, as complete_tasks
-- returns them, every claim column NULL) and a claimed task's (`completed` and `recheck_job`
-- NULL, the claim columns as claim_tasks returns them).
--
-- complete_and_claim($1 worker, $2 task ids, $3 attempts, $4 outputs, $5 n, $6 lease in s)
CREATE FUNCTION complete_and_claim(uuid, bigint[], integer[], jsonb[], bigint, double precision)
RETURNS TABLE (
    completed bigint, recheck_job uuid,
    id bigint, job_id uuid, kind text, tile_index integer, attempt integer,
    max_attempts integer, lease_expires_at timestamptz,
    recipe text, params jsonb, inputs jsonb, trace_context jsonb,
    x_px integer, y_px integer, width_px integer, height_px integer
)
LANGUAGE plpgsql VOLATILE
AS $fn$
#variable_conflict use_column
BEGIN
    IF cardinality($2) > 0 THEN
        RETURN QUERY
        SELECT c.task_id, c.recheck_job,
               NULL::bigint, NULL::uuid, NULL::text, NULL::integer, NULL::integer,
               NULL::integer, NULL::timestamptz, NULL::text, NULL::jsonb, NULL::jsonb,
               NULL::jsonb, NULL::integer, NULL::integer, NULL::integer, NULL::integer
        FROM complete_tasks($1, $2, $3, $4) c;
    END IF;
    IF $5 > 0 THEN
        RETURN QUERY
        SELECT NULL::bigint, NULL::uuid, t.*
        FROM claim_tasks($1, $5, $6) t;
    END IF;
END
$fn$;
