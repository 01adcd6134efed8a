// Tests that live events update the TanStack Query cache in place and invalidate only what they must.
import { QueryClient } from '@tanstack/react-query';
import { describe, expect, it } from 'vitest';
import { keys } from '../api/queries';
import type { FootprintCollection, Job, JobPage } from '../api/types';
import { EMPTY_FILTER } from '../lib/filters';
import { FIRST_LOG_PAGE, logLines, type LogPages } from '../lib/logPages';
import { ev, footprints, JOB } from './fixtures';
import { applyEventToCache } from './cache';

function seeded() {
  const client = new QueryClient({ defaultOptions: { queries: { retry: false } } });
  const other: Job = { ...JOB, id: 'job-2' };
  client.setQueryData(keys.job('job-1'), JOB);
  client.setQueryData<JobPage>(keys.jobList(EMPTY_FILTER, null), { items: [JOB, other], next_cursor: null });
  client.setQueryData(keys.footprints('job-1'), footprints(['queued', 'queued', 'queued', 'queued']));
  client.setQueryData<LogPages>(keys.logs('job-1'), { pages: [{ items: [], more: false }], pageParams: [FIRST_LOG_PAGE] });
  return { client, other };
}

const invalidated = (client: QueryClient, key: readonly unknown[]) => client.getQueryState(key)?.isInvalidated;

describe('applyEventToCache', () => {
  it('updates detail, list rows and footprints from a progress event without refetching', () => {
    const { client, other } = seeded();
    applyEventToCache(client, ev('progress', { tiles_succeeded: 2, tiles_total: 4, tiles: [0, 3] }));
    expect(client.getQueryData<Job>(keys.job('job-1'))?.tiles_succeeded).toBe(2);
    const page = client.getQueryData<JobPage>(keys.jobList(EMPTY_FILTER, null))!;
    expect(page.items[0]?.tiles_succeeded).toBe(2);
    expect(page.items[1]).toBe(other);
    const fc = client.getQueryData<FootprintCollection>(keys.footprints('job-1'))!;
    expect(fc.features.map((f) => f.properties.state)).toEqual(['succeeded', 'queued', 'queued', 'succeeded']);
    expect(invalidated(client, keys.job('job-1'))).toBe(false);
    expect(invalidated(client, keys.jobList(EMPTY_FILTER, null))).toBe(false);
  });

  it('appends logs to the job log cache', () => {
    const { client } = seeded();
    applyEventToCache(client, ev('log', { id: 3, level: 'error', message: 'tile 2 failed', task_id: 9 }));
    expect(logLines(client.getQueryData<LogPages>(keys.logs('job-1'))).map((e) => e.message)).toEqual(['tile 2 failed']);
  });

  it('sets the new state at once and lets the server re-filter lists on state changes', () => {
    const { client } = seeded();
    applyEventToCache(client, ev('job_failed', { error: 'finalize failed' }));
    expect(client.getQueryData<Job>(keys.job('job-1'))).toMatchObject({ state: 'failed', error: 'finalize failed' });
    expect(invalidated(client, keys.jobList(EMPTY_FILTER, null))).toBe(true);
  });

  it('refetches the job after a failed tile (counts live on the server)', () => {
    const { client } = seeded();
    applyEventToCache(client, ev('tile_failed', { tile_index: 1, error: 'read error' }));
    expect(invalidated(client, keys.job('job-1'))).toBe(true);
    const fc = client.getQueryData<FootprintCollection>(keys.footprints('job-1'))!;
    expect(fc.features[1]?.properties.state).toBe('failed');
  });

  it('refetches job, footprints and tasks after a retry', () => {
    const { client } = seeded();
    client.setQueryData(keys.tasks('job-1'), { items: [] });
    applyEventToCache(client, ev('job_retried', { tasks: 2 }));
    expect(invalidated(client, keys.job('job-1'))).toBe(true);
    expect(invalidated(client, keys.footprints('job-1'))).toBe(true);
    expect(invalidated(client, keys.tasks('job-1'))).toBe(true);
    expect(invalidated(client, keys.jobList(EMPTY_FILTER, null))).toBe(true);
  });

  it('leaves caches it does not hold alone', () => {
    const client = new QueryClient();
    applyEventToCache(client, ev('progress', { tiles_succeeded: 1, tiles_total: 4, tiles: [0] }));
    expect(client.getQueryData(keys.footprints('job-1'))).toBeUndefined();
    expect(client.getQueryData(keys.job('job-1'))).toBeUndefined();
  });
});
