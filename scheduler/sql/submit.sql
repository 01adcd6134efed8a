-- Insert job $1 ($2 account … $9 trace context; $10-$13 the footprints' bounding box: west,
-- south, east, north, NULL when no tile has one) and its job_queued event. Its tiles and tile
-- tasks follow in the same transaction by binary COPY (Queue::submit), tasks in plan order so
-- that their ids follow the plan; the finalize task is inserted after them
-- (submit_finalize.sql), so it has the job's highest task id.
WITH new_job AS (
    INSERT INTO job (id, account_id, recipe, params, inputs, priority, max_attempts,
                     tiles_total, trace_context, footprint_extent)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,
            ST_MakeEnvelope($10::float8, $11::float8, $12::float8, $13::float8, 4326))
)
INSERT INTO event (job_id, kind, payload)
VALUES ($1, 'job_queued', jsonb_build_object('tiles_total', $8::int))
