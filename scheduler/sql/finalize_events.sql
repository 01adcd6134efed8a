-- The end of finalize_unblock.sql and finalize_sweep.sql, whose `unblocked` CTE returns the
-- finalize tasks they made claimable: per job, a `progress` event with the final count (the
-- completions' own events may have lagged it), then `finalize_queued`. Returns the tasks in
-- id order.
), events AS (
    INSERT INTO event (job_id, kind, payload)
    SELECT u.job_id, e.kind, e.payload
    FROM unblocked u
    JOIN job j ON j.id = u.job_id
    CROSS JOIN LATERAL (VALUES
        (1, 'progress', jsonb_build_object('tiles_succeeded', j.tiles_total,
                                           'tiles_total', j.tiles_total,
                                           'tiles', '[]'::jsonb)),
        (2, 'finalize_queued', jsonb_build_object('task_id', u.id))) e(ord, kind, payload)
    ORDER BY u.job_id, e.ord
)
SELECT id FROM unblocked ORDER BY id
