-- Jobs of account $1, newest first, filtered: states $2, recipe $3, text pattern $4 (ILIKE,
-- escaped), created in [$5, $6), footprint extent intersecting bbox $7 (w, s, e, n), after
-- the keyset cursor ($8 created_at, $9 id), at most $10; or the one job $11.
-- Everything comes from the job row (tiles failed and the finalize output are kept there);
-- only the progress of an unfinished job adds its shards not yet folded onto the row (at
-- most 64 rows by primary key, for the page's unfinished jobs only).
SELECT j.id, j.account_id, j.recipe, j.params, j.inputs, j.state, j.priority, j.tiles_total,
       j.tiles_succeeded + coalesce(p.tiles, 0) AS tiles_succeeded, j.tiles_failed, j.error,
       j.created_at, j.started_at, j.finished_at,
       ST_XMin(j.footprint_extent) AS xmin, ST_YMin(j.footprint_extent) AS ymin,
       ST_XMax(j.footprint_extent) AS xmax, ST_YMax(j.footprint_extent) AS ymax,
       j.output
FROM (
    SELECT *
    FROM job j
    WHERE j.account_id = $1
      AND ($11::uuid IS NULL OR j.id = $11)
      AND ($2::text[] IS NULL OR j.state = ANY ($2))
      AND ($3::text IS NULL OR j.recipe = $3)
      AND ($4::text IS NULL
           OR j.id::text ILIKE $4 OR j.recipe ILIKE $4
           OR j.params::text ILIKE $4 OR j.inputs::text ILIKE $4)
      AND ($5::timestamptz IS NULL OR j.created_at >= $5)
      AND ($6::timestamptz IS NULL OR j.created_at < $6)
      AND ($7::float8[] IS NULL
           OR j.footprint_extent && ST_MakeEnvelope($7[1], $7[2], $7[3], $7[4], 4326))
      AND ($8::timestamptz IS NULL OR (j.created_at, j.id) < ($8, $9::uuid))
    ORDER BY j.created_at DESC, j.id DESC
    LIMIT $10
) j
LEFT JOIN LATERAL (
    SELECT sum(g.tiles)::int AS tiles
    FROM job_progress g
    WHERE g.job_id = j.id AND j.state IN ('queued', 'running')
) p ON true
ORDER BY j.created_at DESC, j.id DESC
