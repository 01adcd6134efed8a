// Pure reducers that fold one live event into cached API data (job, footprints, logs, workers).
import type { FootprintCollection, GpuSample, Job, LogEntry, TaskState, WorkerList } from '../api/types';
import { appendLiveLog, type LogPages } from '../lib/logPages';
import type { LiveEvent } from './messages';

export const MAX_SAMPLES_PER_GPU = 120;

/** The job after the event; the same object when the event does not concern it. */
export function applyToJob(job: Job, event: LiveEvent): Job {
  if (event.job_id !== job.id) return job;
  switch (event.kind) {
    case 'job_queued':
      return { ...job, state: 'queued', tiles_total: event.payload.tiles_total };
    case 'job_running':
      return job.state === 'running' ? job : { ...job, state: 'running', started_at: job.started_at ?? event.ts };
    case 'progress':
      return {
        ...job,
        state: job.state === 'queued' ? 'running' : job.state,
        tiles_succeeded: Math.max(job.tiles_succeeded, event.payload.tiles_succeeded),
        tiles_total: event.payload.tiles_total,
      };
    case 'job_succeeded':
      return { ...job, state: 'succeeded', tiles_succeeded: job.tiles_total, finished_at: event.ts, error: null };
    case 'job_failed':
      return { ...job, state: 'failed', error: event.payload.error, finished_at: event.ts };
    case 'job_cancelled':
      return { ...job, state: 'cancelled', finished_at: event.ts };
    default:
      return job;
  }
}

const UNFINISHED: readonly TaskState[] = ['blocked', 'queued', 'running'];

function setTileStates(
  collection: FootprintCollection,
  next: (tile_index: number, state: TaskState) => TaskState,
): FootprintCollection {
  let changed = false;
  const features = collection.features.map((feature) => {
    const state = next(feature.properties.tile_index, feature.properties.state);
    if (state === feature.properties.state) return feature;
    changed = true;
    return { ...feature, properties: { ...feature.properties, state } };
  });
  return changed ? { ...collection, features } : collection;
}

/** Tile footprints after the event (footprints of the job `job_id`). */
export function applyToFootprints(
  collection: FootprintCollection,
  job_id: string,
  event: LiveEvent,
): FootprintCollection {
  if (event.job_id !== job_id) return collection;
  switch (event.kind) {
    case 'progress': {
      const done = new Set(event.payload.tiles);
      return setTileStates(collection, (tile, state) => (done.has(tile) ? 'succeeded' : state));
    }
    case 'tile_failed':
      return setTileStates(collection, (tile, state) => (tile === event.payload.tile_index ? 'failed' : state));
    case 'task_failed': {
      const { tile_index, retry_at } = event.payload;
      if (tile_index === null) return collection;
      return setTileStates(collection, (tile, state) =>
        tile === tile_index ? (retry_at ? 'queued' : 'failed') : state,
      );
    }
    case 'job_succeeded':
      return setTileStates(collection, () => 'succeeded');
    case 'job_cancelled':
      return setTileStates(collection, (_tile, state) => (UNFINISHED.includes(state) ? 'cancelled' : state));
    default:
      return collection;
  }
}

/**
 * Appends a `log` event to the job's log window (lib/logPages: only when the window reaches the end of the log,
 * at most LOG_MAX_PAGES pages, no duplicates by id).
 */
export function applyToLogs(data: LogPages, job_id: string, event: LiveEvent): LogPages {
  if (event.job_id !== job_id || event.kind !== 'log') return data;
  // Live entries without a server log id get a negative id from the event sequence, so they never collide.
  const entry: LogEntry = {
    id: event.payload.id ?? -event.seq,
    ts: event.ts,
    level: event.payload.level,
    message: event.payload.message,
    task_id: event.payload.task_id,
  };
  return appendLiveLog(data, entry);
}

function appendSamples(existing: GpuSample[], incoming: GpuSample[]): GpuSample[] {
  const all = [...existing, ...incoming];
  const per_gpu = new Map<number, GpuSample[]>();
  for (const sample of all) {
    const list = per_gpu.get(sample.gpu_index) ?? [];
    list.push(sample);
    per_gpu.set(sample.gpu_index, list);
  }
  return [...per_gpu.values()].flatMap((list) =>
    list.sort((a, b) => Date.parse(a.ts) - Date.parse(b.ts)).slice(-MAX_SAMPLES_PER_GPU),
  );
}

/** Worker list after the event; null when the event names a worker the list lacks (refetch instead). */
export function applyToWorkers(list: WorkerList, event: LiveEvent): WorkerList | null {
  switch (event.kind) {
    case 'worker_down':
    case 'gpu_sample':
    case 'worker_up': {
      const worker_id = event.payload.worker_id;
      const index = list.items.findIndex((worker) => worker.id === worker_id);
      if (index < 0) return null;
      const worker = list.items[index]!;
      const updated =
        event.kind === 'worker_down'
          ? { ...worker, state: 'down' as const }
          : event.kind === 'worker_up'
            ? { ...worker, state: 'up' as const, heartbeat_at: event.ts }
            : { ...worker, heartbeat_at: event.ts, samples: appendSamples(worker.samples, event.payload.samples) };
      const items = [...list.items];
      items[index] = updated;
      return { ...list, items };
    }
    default:
      return list;
  }
}
