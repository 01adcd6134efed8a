// A fetch stand-in serving fixed /v1 responses for page tests; records requests for assertions.
import type { Job, LogEntry, Problem, Task, Worker } from '../api/types';
import { footprints, JOB } from '../live/fixtures';

export interface RecordedRequest {
  method: string;
  url: string;
  body: unknown;
}

const FAILED_JOB: Job = {
  ...JOB,
  id: '7d1f0c2e-0000-4000-8000-000000000002',
  state: 'failed',
  tiles_succeeded: 3,
  tiles_failed: 1,
  error: 'tile 3 failed after 3 attempts',
};

const SUCCEEDED_JOB: Job = {
  ...JOB,
  id: '7d1f0c2e-0000-4000-8000-000000000001',
  state: 'succeeded',
  tiles_succeeded: 4,
  outputs: { cog: '/out/a_ndvi.tif', stac: '/out/a_ndvi.json' },
};

/** Cancelled part-way: 40 tiles done, 60 failed, 156 + the finalize task cancelled; a log of 1203 lines. */
export const CANCELLED_JOB: Job = {
  ...JOB,
  id: '7d1f0c2e-0000-4000-8000-000000000003',
  state: 'cancelled',
  tiles_total: 256,
  tiles_succeeded: 40,
  tiles_failed: 60,
  error: 'cancelled by request',
};

const CANCELLED_TASKS: Task[] = Array.from({ length: 257 }, (_, i) => {
  const tile = i < 256;
  const state = !tile || i >= 100 ? 'cancelled' : i < 40 ? 'succeeded' : 'failed';
  return {
    id: 1000 + i,
    kind: tile ? 'tile' : 'finalize',
    tile_index: tile ? i : null,
    state,
    attempt: state === 'failed' ? 3 : 1,
    max_attempts: 3,
    worker_id: null,
    error: state === 'failed' ? `tile ${i}: read error` : state === 'cancelled' ? 'cancelled by request' : null,
  };
});

/** Log ids 2, 4, 6, … (ids are global, so not dense per job). */
export const CANCELLED_LOG_LINES = 1203;
function cancelledLog(after: number, limit: number): LogEntry[] {
  const first = Math.floor(after / 2) + 1;
  const last = Math.min(CANCELLED_LOG_LINES, first + limit - 1);
  return Array.from({ length: Math.max(0, last - first + 1) }, (_, i) => ({
    id: (first + i) * 2,
    ts: '2026-01-01T00:00:00Z',
    level: 'info',
    message: `log line ${first + i}`,
    task_id: null,
  }));
}

const WORKER: Worker = {
  id: '5a5a5a5a-0000-4000-8000-000000000009',
  host: 'gpu-node-1',
  backend: 'wgpu',
  state: 'up',
  started_at: '2026-01-01T00:00:00Z',
  heartbeat_at: new Date().toISOString(),
  gpus: [
    { index: 0, name: 'NVIDIA H100', uuid: 'GPU-1', memory_total_bytes: 80 * 1024 ** 3 },
  ] as unknown as Worker['gpus'],
  samples: [0, 1, 2].map((i) => ({
    gpu_index: 0,
    ts: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
    util_gpu_pct: 40 + i * 10,
    util_mem_pct: 20,
    mem_used_bytes: (10 + i) * 1024 ** 3,
    mem_total_bytes: 80 * 1024 ** 3,
    temp_c: 55 + i,
    power_w: 300 + i,
    simulated: true,
  })),
};

export const PROBLEM: Problem = {
  type: 'https://constellation.invalid/problems/validation',
  title: 'invalid job',
  status: 422,
  detail: 'the job has 1 invalid field',
  errors: [{ field: 'inputs[0].path', message: 'no such file: /nope.tif' }],
};

function json(body: unknown, status = 200, type = 'application/json'): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': type } });
}

export function mockApi(requests: RecordedRequest[] = []) {
  return async (input: RequestInfo | URL, init: RequestInit = {}): Promise<Response> => {
    const url = new URL(String(input), 'http://ui.test');
    const method = init.method ?? 'GET';
    requests.push({ method, url: url.pathname + url.search, body: init.body ? JSON.parse(String(init.body)) : null });
    const path = url.pathname;
    if (method === 'POST' && path === '/v1/jobs') return json(PROBLEM, 422, 'application/problem+json');
    if (method === 'POST' && path === '/v1/jobs/bulk') return json({ affected: 2, skipped: 1 });
    if (path === '/v1/jobs') return json({ items: [SUCCEEDED_JOB, FAILED_JOB], next_cursor: 'c2' });
    if (path === '/v1/recipes') {
      return json({
        items: [
          {
            name: 'ndvi-landsat-c2l2',
            description: 'cloud-masked NDVI',
            roles: ['red', 'nir', 'qa'],
            outputs: ['ndvi'],
          },
        ],
      });
    }
    if (path === '/v1/workers') return json({ items: [WORKER] });
    const match = /^\/v1\/jobs\/([^/]+)(\/[a-z]+)?$/.exec(path);
    if (match) {
      const job = [FAILED_JOB, SUCCEEDED_JOB, CANCELLED_JOB].find((j) => j.id === match[1]) ?? FAILED_JOB;
      const cancelled = job === CANCELLED_JOB;
      switch (match[2]) {
        case undefined:
          return json(job);
        case '/tasks':
          if (cancelled) return json({ items: CANCELLED_TASKS });
          return json({
            items: [
              {
                id: 13,
                kind: 'tile',
                tile_index: 3,
                state: 'failed',
                attempt: 3,
                max_attempts: 3,
                worker_id: null,
                error: 'read error: short read',
              },
            ],
          });
        case '/logs':
          if (cancelled) {
            const after = Number(url.searchParams.get('after') ?? 0);
            return json({ items: cancelledLog(after, Number(url.searchParams.get('limit') ?? 200)) });
          }
          return json({
            items: [
              { id: 1, ts: '2026-01-01T00:00:01Z', level: 'info', message: 'job started', task_id: null },
              { id: 2, ts: '2026-01-01T00:00:02Z', level: 'error', message: 'tile 3: read error', task_id: 13 },
            ],
          });
        case '/footprints':
          return json(footprints(['succeeded', 'succeeded', 'succeeded', 'failed']));
        case '/stac':
          return json({
            type: 'Feature',
            assets: { data: { 'raster:bands': [{ statistics: { minimum: -0.31, maximum: 0.88 } }] } },
          });
        case '/tilejson':
          return json({
            tilejson: '3.0.0',
            tiles: [`/v1/jobs/${job.id}/tiles/{z}/{x}/{y}.png`],
            minzoom: 0,
            maxzoom: 12,
          });
      }
    }
    return json(
      { type: 'about:blank', title: 'not found', status: 404, detail: `no route ${path}` },
      404,
      'application/problem+json',
    );
  };
}
