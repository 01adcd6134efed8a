// Jobs list page: URL-backed filters, cursor pagination, row selection and bulk actions.
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { memo, useCallback, useState } from 'react';
import { api } from '../api/client';
import { keys, useJobList, useRecipes } from '../api/queries';
import type { BulkAction, BulkRequest, Job } from '../api/types';
import { ErrorNotice } from '../components/ErrorNotice';
import { ProgressBar } from '../components/ProgressBar';
import { StateBadge } from '../components/StateBadge';
import { filterToBody, filterToQuery, isEmptyFilter, parseFilter, type JobFilter } from '../lib/filters';
import { formatTimestamp } from '../lib/format';
import { Link, navigate, useLocation } from '../router';
import { JobFilters } from './JobFilters';

const ACTION_LABELS: Record<BulkAction, string> = { cancel: 'Cancel', retry: 'Retry', delete: 'Delete' };

export function JobsPage() {
  const { query } = useLocation();
  const filter = parseFilter(query);
  const filter_key = filterToQuery(filter).toString();
  const cursor = query.get('cursor');
  const recipes = useRecipes();

  const applyFilter = (next: JobFilter) => navigate('/jobs', filterToQuery(next));

  return (
    <>
      <h1>Jobs</h1>
      <JobFilters
        key={`filters?${filter_key}`}
        initial={filter}
        recipes={recipes.data?.items.map((r) => r.name) ?? []}
        onApply={applyFilter}
      />
      <JobResults key={`results?${filter_key}`} filter={filter} cursor={cursor} />
    </>
  );
}

function JobResults({ filter, cursor }: { filter: JobFilter; cursor: string | null }) {
  const client = useQueryClient();
  const list = useJobList(filter, cursor);
  const [previous_cursors, setPreviousCursors] = useState<(string | null)[]>([]);
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [all_action, setAllAction] = useState<BulkAction>('cancel');
  const bulk = useMutation({
    mutationFn: (body: BulkRequest) => api.bulk(body),
    onSuccess: () => {
      setSelected(new Set());
      void client.invalidateQueries({ queryKey: keys.jobs });
    },
  });

  const items = list.data?.items ?? [];
  const next_cursor = list.data?.next_cursor ?? null;

  const goTo = (next: string | null) => {
    const query = filterToQuery(filter);
    if (next) query.set('cursor', next);
    setSelected(new Set());
    navigate('/jobs', query);
  };

  const runOnSelection = (action: BulkAction) => {
    if (action === 'delete' && !window.confirm(`Delete ${selected.size} selected job(s)?`)) return;
    bulk.mutate({ action, ids: [...selected] });
  };

  const runOnFilter = () => {
    const scope = isEmptyFilter(filter) ? 'EVERY job' : 'every job matching the current filter';
    if (!window.confirm(`${ACTION_LABELS[all_action]} ${scope}?`)) return;
    bulk.mutate({ action: all_action, filter: filterToBody(filter) });
  };

  const toggle = useCallback(
    (id: string, on: boolean) =>
      setSelected((current) => {
        const next = new Set(current);
        if (on) next.add(id);
        else next.delete(id);
        return next;
      }),
    [],
  );

  const all_selected = items.length > 0 && items.every((job) => selected.has(job.id));

  return (
    <section aria-labelledby="results-heading">
      <h2 id="results-heading" className="visually-hidden">
        Results
      </h2>
      <div className="bulk" role="group" aria-label="bulk actions">
        <span>{selected.size} selected</span>
        {(Object.keys(ACTION_LABELS) as BulkAction[]).map((action) => (
          <button
            key={action}
            type="button"
            className={action === 'delete' ? 'danger' : undefined}
            disabled={selected.size === 0 || bulk.isPending}
            onClick={() => runOnSelection(action)}
          >
            {ACTION_LABELS[action]} selected
          </button>
        ))}
        <span className="bulk-all">
          <label htmlFor="bulk-all-action">Action for all matching</label>
          <select id="bulk-all-action" value={all_action} onChange={(e) => setAllAction(e.target.value as BulkAction)}>
            {(Object.keys(ACTION_LABELS) as BulkAction[]).map((action) => (
              <option key={action} value={action}>
                {ACTION_LABELS[action]}
              </option>
            ))}
          </select>
          <button type="button" onClick={runOnFilter} disabled={bulk.isPending}>
            Apply to all matching filter
          </button>
        </span>
      </div>
      <p role="status" className="status-line">
        {bulk.isSuccess
          ? `${bulk.data.affected} job(s) affected, ${bulk.data.skipped} skipped (their state does not allow it).`
          : ''}
      </p>
      <ErrorNotice error={bulk.error} heading="bulk action failed" />
      <ErrorNotice error={list.error} heading="could not load jobs" />
      <div className="table-scroll" tabIndex={0} role="region" aria-label="jobs table">
        <table className="jobs-table">
          <thead>
            <tr>
              <th scope="col">
                <input
                  type="checkbox"
                  aria-label="select all jobs on this page"
                  checked={all_selected}
                  onChange={(e) => setSelected(e.target.checked ? new Set(items.map((j) => j.id)) : new Set())}
                />
              </th>
              <th scope="col">Job</th>
              <th scope="col">State</th>
              <th scope="col">Progress</th>
              <th scope="col">Created</th>
            </tr>
          </thead>
          <tbody aria-busy={list.isFetching}>
            {items.map((job) => (
              <JobRow key={job.id} job={job} selected={selected.has(job.id)} onToggle={toggle} />
            ))}
            {list.isSuccess && items.length === 0 && (
              <tr>
                <td colSpan={5}>No jobs match.</td>
              </tr>
            )}
            {list.isPending && (
              <tr>
                <td colSpan={5}>Loading…</td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      <nav className="pager" aria-label="pages">
        <button
          type="button"
          disabled={cursor === null}
          onClick={() => {
            const previous = previous_cursors[previous_cursors.length - 1] ?? null;
            setPreviousCursors(previous_cursors.slice(0, -1));
            goTo(previous);
          }}
        >
          {previous_cursors.length > 0 || cursor === null ? 'Previous page' : 'First page'}
        </button>
        <button
          type="button"
          disabled={next_cursor === null}
          onClick={() => {
            setPreviousCursors([...previous_cursors, cursor]);
            goTo(next_cursor);
          }}
        >
          Next page
        </button>
      </nav>
    </section>
  );
}

interface JobRowProps {
  job: Job;
  selected: boolean;
  onToggle: (id: string, on: boolean) => void;
}

/** Memoised: a live event re-renders only the rows whose job object changed. */
const JobRow = memo(function JobRow({ job, selected, onToggle }: JobRowProps) {
  const name = job.expr ? `expr: ${job.expr}` : job.recipe;
  return (
    <tr>
      <td>
        <input
          type="checkbox"
          aria-label={`select job ${job.id}`}
          checked={selected}
          onChange={(e) => onToggle(job.id, e.target.checked)}
        />
      </td>
      <td>
        <Link to={`/jobs/${job.id}`} className="job-link">
          {name}
        </Link>
        <div className="muted mono">{job.id.slice(0, 8)}</div>
      </td>
      <td>
        <StateBadge state={job.state} />
      </td>
      <td>
        <ProgressBar
          label={`progress of job ${job.id.slice(0, 8)}`}
          succeeded={job.tiles_succeeded}
          failed={job.tiles_failed}
          total={job.tiles_total}
        />
      </td>
      <td>
        <time dateTime={job.created_at}>{formatTimestamp(job.created_at)}</time>
      </td>
    </tr>
  );
});
