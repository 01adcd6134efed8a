-- Three costs of every claim and completion, removed (see scheduler/README.md, "Keeping the
-- hot table lean"):
--
-- 1. Fenced statements find their rows by primary key. They name the worker
--    (`worker_id = $1 AND state = 'running'`), which the partial index task_running_idx
--    (worker_id) WHERE state = 'running' matched; planned from statistics taken while
--    hardly any row runs, a generic plan read the worker's whole range of that index
--    instead of the primary key. That range keeps an entry for every run the worker ever
--    made until vacuum (and, while any transaction is open long, until that ends): every
--    completion and heartbeat walked the worker's history. The reaper, the index's other
--    reader, now reads an index that those statements cannot use: it is on claimed_at and
--    only holds rows whose claimed_at is set, which from here on is exactly the running
--    rows (the paths back to the queue clear it). Heartbeats stay HOT updates: neither the
--    index nor its predicate names lease_expires_at.
-- 2. The job's start leaves the claim statement. Every claim set up the plan nodes of a
--    job lock, a job update and an event insert (and fired the event table's statement
--    trigger) to start a job at most once. claim_tasks now returns its rows as before and
--    starts the jobs it saw queued in a further statement that runs only when there is one.
--    Under the job row's lock and `state = 'queued'` it still happens once.
-- 3. Event notification is a row trigger with a WHEN clause: a `progress` row (one per
--    completion) fires nothing, where the statement trigger ran a plpgsql function over a
--    transition table on every statement that inserted into event, rows or none.

-- 1. -------------------------------------------------------------------------------------------
UPDATE task SET claimed_at = NULL WHERE state <> 'running';
ALTER TABLE task ADD CONSTRAINT task_claimed_iff_running
    CHECK ((state = 'running') = (claimed_at IS NOT NULL));
DROP INDEX task_running_idx;
-- Running rows, for the reaper (`claimed_at IS NOT NULL` in its statements).
CREATE INDEX task_claimed_idx ON task (claimed_at) WHERE claimed_at IS NOT NULL;

-- 2. -------------------------------------------------------------------------------------------
-- claim_tasks($1 worker, $2 n, $3 lease in seconds): as in 0004, with the job start apart.
CREATE OR REPLACE FUNCTION claim_tasks(uuid, bigint, double precision)
RETURNS TABLE (
    id bigint, job_id uuid, kind text, tile_index integer, attempt integer,
    max_attempts integer, lease_expires_at timestamptz,
    recipe text, params jsonb, inputs jsonb, trace_context jsonb,
    x_px integer, y_px integer, width_px integer, height_px integer
)
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan
AS $fn$
#variable_conflict use_column
DECLARE
    job_queued boolean;
    -- Jobs of this claim that were still queued when it read them.
    starting uuid[];
BEGIN
    FOR id, job_id, kind, tile_index, attempt, max_attempts, lease_expires_at, recipe, params,
        inputs, trace_context, x_px, y_px, width_px, height_px, job_queued IN
        WITH next AS (
            SELECT id
            FROM task
            WHERE state = 'queued' AND run_at <= now()
            ORDER BY priority DESC, run_at, id
            LIMIT $2
            FOR NO KEY UPDATE SKIP LOCKED
        ), claimed AS (
            UPDATE task t
            SET state = 'running',
                attempt = t.attempt + 1,
                worker_id = $1,
                claimed_at = now(),
                lease_expires_at = now() + make_interval(secs => $3)
            WHERE t.id = ANY (ARRAY(SELECT id FROM next))
            RETURNING t.id, t.job_id, t.kind, t.tile_index, t.attempt, t.max_attempts,
                      t.lease_expires_at
        )
        SELECT c.id, c.job_id, c.kind, c.tile_index, c.attempt, c.max_attempts,
               c.lease_expires_at, j.recipe, j.params, j.inputs, j.trace_context,
               tl.x_px, tl.y_px, tl.width_px, tl.height_px, j.state = 'queued'
        FROM claimed c
        JOIN job j ON j.id = c.job_id
        LEFT JOIN LATERAL (
            SELECT x_px, y_px, width_px, height_px FROM tile
            WHERE tile.job_id = c.job_id AND tile.tile_index = c.tile_index
        ) tl ON true
        ORDER BY c.id
    LOOP
        RETURN NEXT;
        IF job_queued AND NOT (job_id = ANY (coalesce(starting, '{}'))) THEN
            starting := array_append(starting, job_id);
        END IF;
    END LOOP;

    IF starting IS NOT NULL THEN
        -- The first claim of a job starts it; jobs locked in id order like every statement
        -- that locks several jobs (a claimed batch may span jobs). A concurrent claim of the
        -- same job waits for the lock and then finds it running.
        WITH locked AS (
            SELECT j.id
            FROM job j
            WHERE j.id = ANY (starting) AND j.state = 'queued'
            ORDER BY j.id
            FOR UPDATE OF j
        ), started AS (
            UPDATE job j
            SET state = 'running', started_at = now()
            FROM locked l
            WHERE j.id = l.id AND j.state = 'queued'
            RETURNING j.id
        )
        INSERT INTO event (job_id, kind, payload)
        SELECT id, 'job_running', '{}' FROM started ORDER BY id;
    END IF;
END
$fn$;

-- 3. -------------------------------------------------------------------------------------------
DROP TRIGGER event_notify ON event;
CREATE OR REPLACE FUNCTION constellation_notify_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('constellation_event', '');
    RETURN NULL;
END $$;
-- Identical notifications of one transaction are folded into one by PostgreSQL, so a
-- statement appending many events still sends one. `progress` events are announced by the
-- completing Queue after its commit (0007).
CREATE TRIGGER event_notify
    AFTER INSERT ON event
    FOR EACH ROW WHEN (NEW.kind <> 'progress')
    EXECUTE FUNCTION constellation_notify_event();
