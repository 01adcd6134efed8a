-- Insert job $1 ($2 account … $9 trace context), its tiles and tile tasks (parallel arrays
-- $10 index, $11 x, $12 y, $13 width, $14 height, $15 footprint WKB, empty = unknown) in one
-- statement; $16-$19 the footprints' bounding box (west, south, east, north; NULL when no
-- tile has one). Tasks are inserted in plan order, so ids follow the plan; the finalize task is
-- inserted after them (submit_finalize.sql), so it has the job's highest task id.
WITH new_job AS (
    INSERT INTO job (id, account_id, recipe, params, inputs, priority, max_attempts,
                     tiles_total, trace_context, footprint_extent)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,
            ST_MakeEnvelope($16::float8, $17::float8, $18::float8, $19::float8, 4326))
), planned AS (
    SELECT * FROM unnest($10::int[], $11::int[], $12::int[], $13::int[], $14::int[],
                         $15::bytea[])
             WITH ORDINALITY AS p(tile_index, x_px, y_px, width_px, height_px, wkb, ord)
), tiles AS (
    INSERT INTO tile (job_id, tile_index, x_px, y_px, width_px, height_px, footprint)
    SELECT $1, p.tile_index, p.x_px, p.y_px, p.width_px, p.height_px,
           CASE WHEN length(p.wkb) = 0 THEN NULL ELSE ST_GeomFromWKB(p.wkb, 4326) END
    FROM planned p
), submitted AS (
    INSERT INTO event (job_id, kind, payload)
    VALUES ($1, 'job_queued', jsonb_build_object('tiles_total', $8::int))
)
INSERT INTO task (job_id, kind, tile_index, state, priority, max_attempts)
SELECT $1, 'tile', p.tile_index, 'queued', $6, $7
FROM planned p
ORDER BY p.ord
