// Job detail page: state, progress, errors, live footprint map with output overlay, failed tiles and logs.
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { lazy, Suspense, useEffect, useLayoutEffect, useRef, useState } from 'react';
import { api } from '../api/client';
import { keys, useFootprints, useJob, useLogPages, useStac, useTasks, useTileJson } from '../api/queries';
import type { Job, LogEntry, Task } from '../api/types';
import { ErrorNotice } from '../components/ErrorNotice';
import { ProgressBar } from '../components/ProgressBar';
import { StateBadge } from '../components/StateBadge';
import { formatTimestamp } from '../lib/format';
import { followsLive, linesBefore, logLines } from '../lib/logPages';
import { DEFAULT_OUTPUT_STYLE, stacBandRange, tileQuery, type OutputStyle } from '../lib/outputStyle';
import { cancelledText, FAILURES_SHOWN, moreToShow, taskProblems } from '../lib/taskProblems';
import { Legend } from '../map/Legend';
import { Link, navigate } from '../router';
import { OutputControls } from './OutputControls';

// MapLibre is most of the bundle: load it only when a map is on screen.
const JobMap = lazy(() => import('../map/JobMap').then((module) => ({ default: module.JobMap })));

export function JobDetailPage({ id }: { id: string }) {
  const job = useJob(id);
  if (job.isPending) return <p>Loading job…</p>;
  if (job.isError) {
    return (
      <>
        <h1>Job</h1>
        <ErrorNotice error={job.error} heading="could not load the job" />
        <p>
          <Link to="/jobs">Back to jobs</Link>
        </p>
      </>
    );
  }
  return <JobDetail job={job.data} />;
}

function JobDetail({ job }: { job: Job }) {
  const footprints = useFootprints(job.id);
  const tasks = useTasks(job.id);
  const succeeded = job.state === 'succeeded';
  const [output_style, setOutputStyle] = useState<OutputStyle>(DEFAULT_OUTPUT_STYLE);
  const tilejson = useTileJson(job.id, tileQuery(output_style), succeeded);
  const stac = useStac(job.id, succeeded && output_style.rescale === null);
  const [show_output, setShowOutput] = useState(true);
  const [opacity_pct, setOpacityPct] = useState(85);

  return (
    <>
      <div className="title-row">
        <h1>
          Job <span className="mono">{job.id.slice(0, 8)}</span>
        </h1>
        <StateBadge state={job.state} />
      </div>
      <JobSummary job={job} />
      <JobActions job={job} />
      {job.error && (
        <div className="notice notice-error" role="alert">
          <strong>job {job.state}: </strong>
          {job.error}
        </div>
      )}
      <section aria-labelledby="map-heading" className="map-section">
        <h2 id="map-heading">Tiles</h2>
        <Suspense fallback={<div className="map">Loading map…</div>}>
          <JobMap
            footprints={footprints.data}
            bbox={job.bbox}
            output={show_output ? tilejson.data : undefined}
            output_opacity={opacity_pct / 100}
          />
        </Suspense>
        <div className="map-controls">
          <Legend
            output={
              show_output && tilejson.data
                ? { colormap: output_style.colormap, range: output_style.rescale ?? stacBandRange(stac.data) }
                : null
            }
          />
          {succeeded && (
            <OutputControls
              visible={show_output}
              onVisibleChange={setShowOutput}
              style={output_style}
              onStyleChange={setOutputStyle}
              opacity_pct={opacity_pct}
              onOpacityChange={setOpacityPct}
            />
          )}
        </div>
        <ErrorNotice error={footprints.error} heading="could not load tile footprints" />
        <ErrorNotice error={tilejson.error} heading="could not load the output layer" />
      </section>
      <FailedTiles tasks={tasks.data?.items ?? []} />
      <LogList job_id={job.id} />
    </>
  );
}

function JobSummary({ job }: { job: Job }) {
  return (
    <section aria-label="summary" className="summary">
      <ProgressBar
        label="tile progress"
        succeeded={job.tiles_succeeded}
        failed={job.tiles_failed}
        total={job.tiles_total}
      />
      <dl className="facts">
        <dt>{job.expr ? 'Expression' : 'Recipe'}</dt>
        <dd className={job.expr ? 'mono' : undefined}>{job.expr ?? job.recipe}</dd>
        <dt>Priority</dt>
        <dd>{job.priority}</dd>
        <dt>Created</dt>
        <dd>{formatTimestamp(job.created_at)}</dd>
        <dt>Started</dt>
        <dd>{formatTimestamp(job.started_at)}</dd>
        <dt>Finished</dt>
        <dd>{formatTimestamp(job.finished_at)}</dd>
        <dt>Inputs</dt>
        <dd>
          <ul className="plain">
            {job.inputs.map((input, i) => (
              <li key={i} className="mono">
                {input.role ? `${input.role}=` : ''}
                {input.path}
                {input.band ? `#${input.band}` : ''}
              </li>
            ))}
          </ul>
        </dd>
        {job.outputs && (
          <>
            <dt>Outputs</dt>
            <dd>
              <span className="mono">{job.outputs.cog}</span>{' '}
              <a href={`/v1/jobs/${encodeURIComponent(job.id)}/stac`}>STAC item</a>
            </dd>
          </>
        )}
      </dl>
    </section>
  );
}

function JobActions({ job }: { job: Job }) {
  const client = useQueryClient();
  const refresh = (updated: Job) => {
    client.setQueryData(keys.job(job.id), updated);
    void client.invalidateQueries({ queryKey: keys.jobs });
  };
  const cancel = useMutation({ mutationFn: () => api.cancelJob(job.id), onSuccess: refresh });
  const retry = useMutation({ mutationFn: () => api.retryJob(job.id), onSuccess: refresh });
  const remove = useMutation({
    mutationFn: () => api.deleteJob(job.id),
    onSuccess: () => {
      client.removeQueries({ queryKey: keys.job(job.id) });
      void client.invalidateQueries({ queryKey: keys.jobLists });
      navigate('/jobs');
    },
  });
  const busy = cancel.isPending || retry.isPending || remove.isPending;
  const active = job.state === 'queued' || job.state === 'running';
  return (
    <div className="actions" role="group" aria-label="job actions">
      <button type="button" disabled={!active || busy} onClick={() => cancel.mutate()}>
        Cancel
      </button>
      <button
        type="button"
        disabled={busy || !(job.state === 'failed' || job.state === 'cancelled')}
        onClick={() => retry.mutate()}
      >
        Retry
      </button>
      <button
        type="button"
        className="danger"
        disabled={busy || job.state === 'running'}
        onClick={() => window.confirm('Delete this job and its outputs?') && remove.mutate()}
      >
        Delete
      </button>
      <ErrorNotice error={cancel.error ?? retry.error ?? remove.error} heading="action failed" />
    </div>
  );
}

function FailedTiles({ tasks }: { tasks: Task[] }) {
  const [shown, setShown] = useState(FAILURES_SHOWN);
  const list = useRef<HTMLUListElement>(null);
  // After "show more", focus moves to the first failure it revealed (the button may be gone).
  const revealed_from = useRef<number | null>(null);
  useEffect(() => {
    if (revealed_from.current === null) return;
    list.current?.querySelectorAll<HTMLLIElement>('li')[revealed_from.current]?.focus();
    revealed_from.current = null;
  }, [shown]);
  const { failures, cancelled } = taskProblems(tasks);
  if (failures.length === 0 && cancelled.length === 0) return null;
  const more = moreToShow(failures.length, shown);
  return (
    <section aria-labelledby="failed-heading">
      <h2 id="failed-heading">Failed tiles</h2>
      {failures.length === 0 ? (
        <p>No tile failed.</p>
      ) : (
        <>
          <p className="muted">
            {failures.length} failed {failures.length === 1 ? 'task' : 'tasks'}
            {failures.length > shown ? `, showing the first ${shown}` : ''}
          </p>
          <ul className="failed-tiles" ref={list}>
            {failures.slice(0, shown).map((task) => (
              <li key={task.id} tabIndex={-1}>
                <strong>{task.kind === 'finalize' ? 'finalize' : `tile ${task.tile_index}`}</strong>{' '}
                <span className="muted">
                  (attempt {task.attempt}/{task.max_attempts}, {task.state === 'failed' ? 'failed' : 'will retry'})
                </span>
                : <span className="error-text">{task.error}</span>
              </li>
            ))}
          </ul>
          {more > 0 && (
            <button
              type="button"
              onClick={() => {
                revealed_from.current = shown;
                setShown(shown + more);
              }}
            >
              Show {more} more
            </button>
          )}
        </>
      )}
      {cancelled.length > 0 && (
        <ul className="plain cancelled-tiles" aria-label="cancelled tasks">
          {cancelled.map((entry) => (
            <li key={entry.reason}>
              {cancelledText(entry)}: <span className="muted">{entry.reason}</span>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

function LogList({ job_id }: { job_id: string }) {
  const logs = useLogPages(job_id);
  const items = logLines(logs.data);
  const before = logs.data ? linesBefore(logs.data) : 0;
  const live = logs.data ? followsLive(logs.data) : false;
  const box = useRef<HTMLDivElement>(null);
  // Follow live lines while the view is scrolled to its end.
  const at_end = useRef(true);
  useLayoutEffect(() => {
    const element = box.current;
    if (element && at_end.current && live) element.scrollTop = element.scrollHeight;
  }, [items.length, live]);
  const busy = logs.isFetchingNextPage || logs.isFetchingPreviousPage;
  return (
    <section aria-labelledby="logs-heading">
      <h2 id="logs-heading">Log</h2>
      <ErrorNotice error={logs.error} heading="could not load the log" />
      {logs.hasPreviousPage && (
        <div className="log-pager">
          <span className="muted">{before} earlier lines not shown</span>
          <button
            type="button"
            disabled={busy}
            onClick={async () => {
              // At the start the button goes away: keep focus in the log.
              if (!(await logs.fetchPreviousPage()).hasPreviousPage) box.current?.focus();
            }}
          >
            Load older lines
          </button>
        </div>
      )}
      <div
        className="log"
        role="log"
        aria-label="job log"
        tabIndex={0}
        ref={box}
        onScroll={(event) => {
          const element = event.currentTarget;
          at_end.current = element.scrollHeight - element.scrollTop - element.clientHeight < 8;
        }}
      >
        <ol start={before + 1}>
          {items.map((entry) => (
            <LogLine key={entry.id} entry={entry} />
          ))}
          {logs.isSuccess && items.length === 0 && <li className="muted">No log entries yet.</li>}
        </ol>
      </div>
      <div className="log-pager">
        {logs.isSuccess && (
          <span className="muted log-status">
            {linesText(before, items.length)}
            {live ? `${items.length > 0 ? '; ' : ''}new lines appear as they are written` : ''}
          </span>
        )}
        {logs.hasNextPage && (
          <button
            type="button"
            disabled={busy}
            onClick={async () => {
              if (!(await logs.fetchNextPage()).hasNextPage) box.current?.focus();
            }}
          >
            Load newer lines
          </button>
        )}
      </div>
    </section>
  );
}

/** "line 1", "lines 501–2500", or '' with no lines. */
function linesText(before: number, count: number): string {
  if (count === 0) return '';
  return count === 1 ? `line ${before + 1}` : `lines ${before + 1}–${before + count}`;
}

function LogLine({ entry }: { entry: LogEntry }) {
  return (
    <li className={`log-${entry.level}`}>
      <time dateTime={entry.ts}>{formatTimestamp(entry.ts)}</time> <span className="level">{entry.level}</span>{' '}
      {entry.task_id !== null && <span className="muted">task {entry.task_id} </span>}
      <span>{entry.message}</span>
    </li>
  );
}
