// Applies live events to the TanStack Query cache: incremental updates, invalidation only where data is missing.
import type { QueryClient } from '@tanstack/react-query';
import { keys } from '../api/queries';
import type { FootprintCollection, Job, JobPage, WorkerList } from '../api/types';
import type { LogPages } from '../lib/logPages';
import { applyToFootprints, applyToJob, applyToLogs, applyToWorkers } from './apply';
import type { LiveEvent } from './messages';

const JOB_STATE_KINDS = new Set([
  'job_queued',
  'job_running',
  'job_succeeded',
  'job_failed',
  'job_cancelled',
  'job_retried',
]);
/** Events after which the job row itself must come from the server (failure counts, outputs, requeues). */
const REFETCH_JOB_KINDS = new Set(['tile_failed', 'task_failed', 'job_succeeded', 'job_retried']);

export function applyEventToCache(client: QueryClient, event: LiveEvent): void {
  const job_id = event.job_id;
  if (job_id) {
    client.setQueryData<Job>(keys.job(job_id), (job) => (job ? applyToJob(job, event) : job));
    client.setQueriesData<JobPage>({ queryKey: keys.jobLists }, (page) => {
      if (!page) return page;
      let changed = false;
      const items = page.items.map((job) => {
        const next = applyToJob(job, event);
        changed ||= next !== job;
        return next;
      });
      return changed ? { ...page, items } : page;
    });
    client.setQueryData<FootprintCollection>(keys.footprints(job_id), (fc) =>
      fc ? applyToFootprints(fc, job_id, event) : fc,
    );
    client.setQueryData<LogPages>(keys.logs(job_id), (logs) => (logs ? applyToLogs(logs, job_id, event) : logs));
    if (REFETCH_JOB_KINDS.has(event.kind) || JOB_STATE_KINDS.has(event.kind) || event.kind === 'finalize_queued') {
      void client.invalidateQueries({ queryKey: keys.tasks(job_id) });
    }
    // A new job or a changed state can move jobs in or out of a filtered list: let the server decide.
    if (JOB_STATE_KINDS.has(event.kind)) void client.invalidateQueries({ queryKey: keys.jobLists });
    if (REFETCH_JOB_KINDS.has(event.kind)) void client.invalidateQueries({ queryKey: keys.job(job_id) });
    // A retry requeues tiles the footprints show as failed or cancelled.
    if (event.kind === 'job_retried') void client.invalidateQueries({ queryKey: keys.footprints(job_id) });
  }
  if (event.kind === 'worker_up' || event.kind === 'worker_down' || event.kind === 'gpu_sample') {
    const workers = client.getQueryData<WorkerList>(keys.workers);
    if (!workers) return;
    const next = applyToWorkers(workers, event);
    if (next) client.setQueryData(keys.workers, next);
    else void client.invalidateQueries({ queryKey: keys.workers });
  }
}

/** After a gap in the stream: mark everything stale and refetch what is on screen. */
export function refetchAll(client: QueryClient): void {
  void client.invalidateQueries();
}
