// Hand-written types for /v1/ws messages (the WebSocket protocol is not part of the OpenAPI document).
import type { GpuSample } from '../api/types';

export interface EventPayloads {
  job_queued: { recipe: string; tiles_total: number };
  job_running: Record<string, never>;
  progress: { tiles_succeeded: number; tiles_total: number; tiles: number[] };
  tile_failed: { tile_index: number; error: string };
  /** What the scheduler emits per failed attempt; retry_at null means the task failed for good. */
  task_failed: { task_id: number; tile_index: number | null; attempt: number; error: string; retry_at: string | null };
  finalize_queued: { task_id?: number };
  job_succeeded: Record<string, never>;
  job_failed: { error: string };
  job_cancelled: { reason?: string; error?: string | null };
  job_retried: { tasks: number };
  log: { id?: number; level: 'info' | 'warn' | 'error'; message: string; task_id: number | null };
  worker_up: { worker_id: string; host: string; backend: string };
  worker_down: { worker_id: string };
  gpu_sample: { worker_id: string; samples: GpuSample[] };
}

export type EventKind = keyof EventPayloads;

/** One server event; `kind` narrows `payload`. Unknown kinds arrive as `kind: string` and are ignored. */
export type LiveEvent = {
  [K in EventKind]: {
    type: 'event';
    seq: number;
    job_id: string | null;
    kind: K;
    payload: EventPayloads[K];
    ts: string;
  };
}[EventKind];

export type ServerMessage =
  LiveEvent | { type: 'resync'; reason: string } | { type: 'lagged'; missed: number } | { type: 'pong' };

export type ClientMessage =
  | { type: 'subscribe'; jobs?: string[] | null; workers?: boolean; all?: boolean }
  | { type: 'ping' };

/** Parses one text frame; null for anything that is not a well-formed server message. */
export function parseServerMessage(data: unknown): ServerMessage | null {
  if (typeof data !== 'string') return null;
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const message = value as Record<string, unknown>;
  switch (message.type) {
    case 'event':
      if (typeof message.seq !== 'number' || typeof message.kind !== 'string') return null;
      return { ...message, payload: message.payload ?? {} } as LiveEvent;
    case 'resync':
      return { type: 'resync', reason: String(message.reason ?? '') };
    case 'lagged':
      return { type: 'lagged', missed: Number(message.missed ?? 0) };
    case 'pong':
      return { type: 'pong' };
    default:
      return null;
  }
}
