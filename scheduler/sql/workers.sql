-- Workers seen in the last day, newest first, each with its GPU samples of the last ten
-- minutes (one row per sample; a worker without samples has one row of NULLs). A worker whose
-- heartbeat is over a minute old counts as down.
SELECT w.id, w.host, w.backend, w.gpus, w.started_at, w.heartbeat_at,
       CASE WHEN w.state <> 'down' AND w.heartbeat_at < now() - interval '1 minute'
            THEN 'down' ELSE w.state END AS state,
       s.gpu_index, s.ts, s.simulated, s.util_gpu_pct, s.util_mem_pct, s.mem_used_bytes,
       s.mem_total_bytes, s.temp_c, s.power_w
FROM worker w
LEFT JOIN gpu_sample s ON s.worker_id = w.id AND s.ts > now() - interval '10 minutes'
WHERE w.heartbeat_at > now() - interval '1 day'
ORDER BY w.started_at DESC, w.id, s.ts, s.gpu_index
