-- Recent throughput (metrics: tiles/s, task durations) reads history by finish time. History
-- is append-only in finish order, so a BRIN index finds the last minutes at almost no
-- insert cost.
CREATE INDEX task_history_finished_brin ON task_history USING brin (finished_at)
    WITH (pages_per_range = 32, autosummarize = on);
