-- Constellation's queue schema: accounts, jobs, tiles, tasks (hot) and their history (cold),
-- workers, events, logs and GPU samples. See scheduler/README.md for the state machines.

CREATE EXTENSION IF NOT EXISTS postgis;

-- Every job belongs to an account from day one; authentication and row-level security come
-- later and key on this column. One default account exists so that nothing needs one yet.
CREATE TABLE account (
    id         uuid PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO account (id, name) VALUES ('00000000-0000-0000-0000-000000000000', 'default');

-- A job: one recipe over a set of inputs, split into tile tasks plus one finalize task.
-- tiles_succeeded is the job's progress counter; it is also what serialises the last tile
-- completions of a job, so that exactly one of them unblocks the finalize task.
CREATE TABLE job (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id       uuid NOT NULL REFERENCES account (id),
    recipe           text NOT NULL,
    params           jsonb NOT NULL DEFAULT '{}',
    inputs           jsonb NOT NULL DEFAULT '[]',
    state            text NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    priority         integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL CHECK (max_attempts >= 1),
    tiles_total      integer NOT NULL CHECK (tiles_total >= 0),
    tiles_succeeded  integer NOT NULL DEFAULT 0,
    finalize_task_id bigint,
    -- The bounding box of the tiles' footprints: spatial search across jobs starts here.
    footprint_extent geometry(Polygon, 4326),
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    error            text,
    trace_context    jsonb
);
CREATE INDEX job_account_created_idx ON job (account_id, created_at DESC);
CREATE INDEX job_unfinished_idx ON job (created_at) WHERE state IN ('queued', 'running');
CREATE INDEX job_footprint_extent_gist ON job USING gist (footprint_extent);

-- A tile of a job: its window on the scene grid and its footprint. Written once at submit and
-- never updated, so the (wide) geometry stays out of the hot task table.
-- No foreign key to job (here and on task): only submit writes these rows, in the job's own
-- transaction, and the per-row key checks cost a third of a 100 k-tile submit.
CREATE TABLE tile (
    job_id    uuid NOT NULL,
    tile_index integer NOT NULL,
    x_px      integer NOT NULL,
    y_px      integer NOT NULL,
    width_px  integer NOT NULL,
    height_px integer NOT NULL,
    footprint geometry(Polygon, 4326),
    PRIMARY KEY (job_id, tile_index)
);
-- Tiles are inserted job by job in plan order, so neighbouring rows are neighbouring tiles:
-- a BRIN index finds them at a fraction of a GiST index's insert cost (a GiST index made a
-- 100 k-tile submit three times slower). Across jobs, job_footprint_extent_gist narrows first.
CREATE INDEX tile_footprint_brin ON tile USING brin (footprint)
    WITH (pages_per_range = 16, autosummarize = on);

-- The hot table: only unfinished tasks (blocked, queued, running) live here. A task leaves
-- for task_history in the same statement that finishes it, so this table stays as small as
-- the backlog, whatever the history. Rows are narrow and updated in place: fillfactor leaves
-- room for HOT updates (heartbeats touch only lease_expires_at, which no index covers).
CREATE TABLE task (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id           uuid NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('tile', 'finalize')),
    tile_index       integer,
    state            text NOT NULL CHECK (state IN ('blocked', 'queued', 'running')),
    priority         integer NOT NULL,
    attempt          integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL CHECK (max_attempts >= 1),
    run_at           timestamptz NOT NULL DEFAULT now(),
    claimed_at       timestamptz,
    lease_expires_at timestamptz,
    worker_id        uuid,
    error            text,
    -- A running task always has an owner and a lease; a waiting one has neither.
    CHECK ((state = 'running') = (worker_id IS NOT NULL AND lease_expires_at IS NOT NULL)),
    CHECK (attempt <= max_attempts)
) WITH (
    fillfactor = 70,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_limit = 2000
);
-- The claim index: only claimable rows, in claim order.
CREATE INDEX task_claim_idx ON task (priority DESC, run_at, id) WHERE state = 'queued';
-- Running rows by owner: heartbeats (by worker) and the reaper (all running rows, few).
CREATE INDEX task_running_idx ON task (worker_id) WHERE state = 'running';
CREATE INDEX task_job_idx ON task (job_id);

-- Finished tasks, append-only. Same columns plus the outcome.
CREATE TABLE task_history (
    id               bigint PRIMARY KEY,
    job_id           uuid NOT NULL,
    kind             text NOT NULL,
    tile_index       integer,
    state            text NOT NULL CHECK (state IN ('succeeded', 'failed', 'cancelled')),
    priority         integer NOT NULL,
    attempt          integer NOT NULL,
    max_attempts     integer NOT NULL,
    claimed_at       timestamptz,
    finished_at      timestamptz NOT NULL DEFAULT now(),
    worker_id        uuid,
    error            text,
    output           jsonb
);
CREATE INDEX task_history_job_idx ON task_history (job_id, tile_index);

CREATE TABLE worker (
    id           uuid PRIMARY KEY,
    host         text NOT NULL,
    backend      text NOT NULL,
    gpus         jsonb NOT NULL DEFAULT '[]',
    state        text NOT NULL DEFAULT 'up' CHECK (state IN ('up', 'draining', 'down')),
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 50);

-- The event log (and outbox): seq orders it; queue statements append here in the same
-- transaction as the change they describe and NOTIFY 'constellation_event'.
CREATE TABLE event (
    seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id     uuid,
    kind       text NOT NULL,
    payload    jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX event_job_idx ON event (job_id, seq) WHERE job_id IS NOT NULL;

CREATE TABLE log (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id  uuid NOT NULL,
    task_id bigint,
    ts      timestamptz NOT NULL DEFAULT now(),
    level   text NOT NULL,
    message text NOT NULL
);
CREATE INDEX log_job_idx ON log (job_id, id);

CREATE TABLE gpu_sample (
    worker_id      uuid NOT NULL,
    gpu_index      integer NOT NULL,
    ts             timestamptz NOT NULL DEFAULT now(),
    simulated      boolean NOT NULL DEFAULT false,
    util_gpu_pct   real,
    util_mem_pct   real,
    mem_used_bytes bigint,
    mem_total_bytes bigint,
    temp_c         real,
    power_w        real,
    PRIMARY KEY (worker_id, gpu_index, ts)
);

-- Wake-ups. Both channels carry an empty payload: PostgreSQL folds identical notifications
-- of one transaction into one, so a statement that queues 10 000 tasks or appends 10 000
-- events sends one NOTIFY each (the debounce), and listeners re-read the tables.

-- A task became claimable again (retry, reaped lease, finalize unblocked). Submissions
-- notify explicitly instead of paying a row trigger per inserted task.
CREATE FUNCTION constellation_notify_task() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('constellation_task', '');
    RETURN NULL;
END $$;
CREATE TRIGGER task_queued_notify
    AFTER UPDATE OF state ON task
    FOR EACH ROW WHEN (NEW.state = 'queued')
    EXECUTE FUNCTION constellation_notify_task();

-- Events were appended: subscribers read event rows after their last seq.
CREATE FUNCTION constellation_notify_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM inserted) THEN
        PERFORM pg_notify('constellation_event', '');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER event_notify
    AFTER INSERT ON event
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT
    EXECUTE FUNCTION constellation_notify_event();
