// Tests for folding live events into cached jobs, footprints, logs and workers.
import { describe, expect, it } from 'vitest';
import type { FootprintCollection, Worker, WorkerList } from '../api/types';
import { FIRST_LOG_PAGE, logLines, type LogPages } from '../lib/logPages';
import { applyToFootprints, applyToJob, applyToLogs, applyToWorkers, MAX_SAMPLES_PER_GPU } from './apply';
import { ev, footprints, JOB } from './fixtures';

const states = (fc: FootprintCollection) => fc.features.map((f) => f.properties.state);

describe('applyToJob', () => {
  it('follows a job through running, progress and success', () => {
    let job = applyToJob(JOB, ev('job_running', {}));
    expect(job.state).toBe('running');
    expect(job.started_at).not.toBeNull();
    job = applyToJob(job, ev('progress', { tiles_succeeded: 3, tiles_total: 4, tiles: [1, 2] }));
    expect(job.tiles_succeeded).toBe(3);
    job = applyToJob(job, ev('progress', { tiles_succeeded: 2, tiles_total: 4, tiles: [0] }));
    expect(job.tiles_succeeded).toBe(3); // a late, older progress event never moves it backwards
    job = applyToJob(job, ev('job_succeeded', {}));
    expect(job).toMatchObject({ state: 'succeeded', tiles_succeeded: 4, error: null });
    expect(job.finished_at).not.toBeNull();
  });

  it('records failure and cancellation', () => {
    expect(applyToJob(JOB, ev('job_failed', { error: 'tile 3: read failed' }))).toMatchObject({
      state: 'failed',
      error: 'tile 3: read failed',
    });
    expect(applyToJob(JOB, ev('job_cancelled', { reason: 'user' })).state).toBe('cancelled');
  });

  it('returns the same object for other jobs and unrelated kinds', () => {
    expect(applyToJob(JOB, ev('job_running', {}, 'job-2'))).toBe(JOB);
    expect(applyToJob(JOB, ev('log', { level: 'info', message: 'x', task_id: null }))).toBe(JOB);
  });
});

describe('applyToFootprints', () => {
  it('colours succeeded tiles from progress and failed tiles from tile_failed', () => {
    let fc = footprints(['queued', 'running', 'running', 'queued']);
    fc = applyToFootprints(fc, 'job-1', ev('progress', { tiles_succeeded: 2, tiles_total: 4, tiles: [1, 2] }));
    expect(states(fc)).toEqual(['queued', 'succeeded', 'succeeded', 'queued']);
    fc = applyToFootprints(fc, 'job-1', ev('tile_failed', { tile_index: 3, error: 'boom' }));
    expect(states(fc)).toEqual(['queued', 'succeeded', 'succeeded', 'failed']);
  });

  it('follows the scheduler task_failed: requeued while retries remain, failed after the last', () => {
    const failed = (retry_at: string | null, tile_index: number | null = 2) =>
      ev('task_failed', { task_id: 12, tile_index, attempt: 1, error: 'read error', retry_at });
    let fc = footprints(['running', 'running', 'running']);
    fc = applyToFootprints(fc, 'job-1', failed('2026-01-01T00:00:05Z'));
    expect(states(fc)).toEqual(['running', 'running', 'queued']);
    fc = applyToFootprints(fc, 'job-1', failed(null));
    expect(states(fc)).toEqual(['running', 'running', 'failed']);
    expect(applyToFootprints(fc, 'job-1', failed(null, null))).toBe(fc);
  });

  it('cancels only unfinished tiles', () => {
    const fc = applyToFootprints(
      footprints(['blocked', 'queued', 'running', 'succeeded', 'failed']),
      'job-1',
      ev('job_cancelled', { reason: 'user' }),
    );
    expect(states(fc)).toEqual(['cancelled', 'cancelled', 'cancelled', 'succeeded', 'failed']);
  });

  it('keeps unchanged features and collections identical (no needless redraw)', () => {
    const fc = footprints(['queued', 'succeeded']);
    expect(applyToFootprints(fc, 'job-1', ev('progress', { tiles_succeeded: 1, tiles_total: 2, tiles: [1] }))).toBe(fc);
    const next = applyToFootprints(fc, 'job-1', ev('progress', { tiles_succeeded: 2, tiles_total: 2, tiles: [0] }));
    expect(next.features[1]).toBe(fc.features[1]);
    expect(applyToFootprints(fc, 'job-1', ev('tile_failed', { tile_index: 0, error: 'x' }, 'job-2'))).toBe(fc);
  });
});

describe('applyToLogs', () => {
  const window = (more: boolean): LogPages => ({ pages: [{ items: [], more }], pageParams: [FIRST_LOG_PAGE] });

  it('appends log events once, with server ids when given', () => {
    const first = ev('log', { id: 41, level: 'warn', message: 'slow read', task_id: 7 });
    let logs = applyToLogs(window(false), 'job-1', first);
    logs = applyToLogs(logs, 'job-1', first);
    logs = applyToLogs(logs, 'job-1', ev('log', { level: 'info', message: 'no id', task_id: null }));
    expect(logLines(logs).map((e) => [e.id > 0 ? e.id : 'live', e.level, e.message])).toEqual([
      [41, 'warn', 'slow read'],
      ['live', 'info', 'no id'],
    ]);
    expect(applyToLogs(logs, 'job-1', ev('log', { level: 'info', message: 'other', task_id: null }, 'job-2'))).toBe(
      logs,
    );
  });

  it('leaves the window alone while newer stored lines are still to be loaded', () => {
    const logs = window(true);
    expect(applyToLogs(logs, 'job-1', ev('log', { id: 9, level: 'info', message: 'later', task_id: null }))).toBe(logs);
  });
});

describe('applyToWorkers', () => {
  const worker: Worker = {
    id: 'w1',
    host: 'gpu-node-1',
    backend: 'wgpu',
    state: 'up',
    started_at: '2026-01-01T00:00:00Z',
    heartbeat_at: '2026-01-01T00:00:00Z',
    // The document types inventory entries as bare objects.
    gpus: [{ index: 0, name: 'H100', uuid: 'GPU-1', memory_total_bytes: 80e9 }] as unknown as Worker['gpus'],
    samples: [],
  };
  const list: WorkerList = { items: [worker] };
  const sample = (i: number, gpu_index = 0) => ({
    gpu_index,
    ts: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
    util_gpu_pct: i,
    util_mem_pct: 0,
    mem_used_bytes: 0,
    mem_total_bytes: 80e9,
    temp_c: 40,
    power_w: 100,
    simulated: true,
  });

  it('marks workers down and appends GPU samples, keeping a bounded window per GPU', () => {
    expect(applyToWorkers(list, ev('worker_down', { worker_id: 'w1' }, null))?.items[0]?.state).toBe('down');
    let next: WorkerList = list;
    for (let i = 0; i < MAX_SAMPLES_PER_GPU + 10; i += 2) {
      next = applyToWorkers(next, ev('gpu_sample', { worker_id: 'w1', samples: [sample(i), sample(i + 1, 1)] }, null))!;
    }
    const samples = next.items[0]!.samples;
    const gpu0 = samples.filter((s) => s.gpu_index === 0);
    expect(gpu0).toHaveLength(65);
    expect(samples.filter((s) => s.gpu_index === 1)).toHaveLength(65);
    const many = applyToWorkers(
      next,
      ev('gpu_sample', { worker_id: 'w1', samples: Array.from({ length: 200 }, (_, i) => sample(200 + i)) }, null),
    )!;
    const kept = many.items[0]!.samples.filter((s) => s.gpu_index === 0);
    expect(kept).toHaveLength(MAX_SAMPLES_PER_GPU);
    expect(kept[kept.length - 1]!.util_gpu_pct).toBe(399);
  });

  it('asks for a refetch (null) when the worker is unknown', () => {
    expect(applyToWorkers(list, ev('worker_up', { worker_id: 'w9', host: 'h', backend: 'cpu' }, null))).toBeNull();
  });
});
