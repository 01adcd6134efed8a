-- Every tile of job $1 with its footprint as GeoJSON and its tile task's state (the hot row
-- if the task is unfinished, else its history row).
SELECT t.job_id, t.tile_index, ST_AsGeoJSON(t.footprint, 7) AS geometry,
       coalesce(k.state, h.state, 'queued') AS state
FROM tile t
LEFT JOIN task k ON k.job_id = t.job_id AND k.kind = 'tile' AND k.tile_index = t.tile_index
LEFT JOIN task_history h
       ON h.job_id = t.job_id AND h.kind = 'tile' AND h.tile_index = t.tile_index
WHERE t.job_id = $1
ORDER BY t.tile_index
