-- Tiles of account $1's jobs whose footprint intersects bbox $2 (w, s, e, n), newest jobs
-- first, at most $3: the jobs' extents (GiST) narrow first, then the tiles (BRIN).
WITH env AS (SELECT ST_MakeEnvelope($2[1], $2[2], $2[3], $2[4], 4326) AS g)
SELECT t.job_id, t.tile_index, ST_AsGeoJSON(t.footprint, 7) AS geometry,
       coalesce(k.state, h.state, 'queued') AS state
FROM env, job j
JOIN tile t ON t.job_id = j.id
LEFT JOIN task k ON k.job_id = t.job_id AND k.kind = 'tile' AND k.tile_index = t.tile_index
LEFT JOIN task_history h
       ON h.job_id = t.job_id AND h.kind = 'tile' AND h.tile_index = t.tile_index
WHERE j.account_id = $1
  AND j.footprint_extent && env.g
  AND t.footprint && env.g
  AND ST_Intersects(t.footprint, env.g)
ORDER BY j.created_at DESC, t.tile_index
LIMIT $3
