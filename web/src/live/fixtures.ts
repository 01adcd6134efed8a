// Shared test fixtures: a job, tile footprints and a live-event factory.
import type { FootprintCollection, Job } from '../api/types';
import type { EventKind, EventPayloads, LiveEvent } from './messages';

export const JOB: Job = {
  id: 'job-1',
  account_id: 'acct',
  recipe: 'ndvi',
  expr: null,
  state: 'queued',
  priority: 0,
  tiles_total: 4,
  tiles_succeeded: 0,
  tiles_failed: 0,
  error: null,
  created_at: '2026-01-01T00:00:00Z',
  started_at: null,
  finished_at: null,
  inputs: [{ role: 'red', path: '/d/a.tif', band: null }],
  params: {},
  bbox: [0, 0, 2, 2],
  outputs: null,
};

let seq = 0;
export function ev<K extends EventKind>(
  kind: K,
  payload: EventPayloads[K],
  job_id: string | null = 'job-1',
): LiveEvent {
  seq += 1;
  return {
    type: 'event',
    seq,
    job_id,
    kind,
    payload,
    ts: `2026-01-01T00:00:${String(seq % 60).padStart(2, '0')}Z`,
  } as LiveEvent;
}

export function footprints(
  states: FootprintCollection['features'][number]['properties']['state'][],
): FootprintCollection {
  return {
    type: 'FeatureCollection',
    features: states.map((state, i) => ({
      type: 'Feature',
      id: i,
      geometry: {
        type: 'Polygon',
        coordinates: [
          [
            [i, 0],
            [i + 1, 0],
            [i + 1, 1],
            [i, 1],
            [i, 0],
          ],
        ],
      },
      properties: { tile_index: i, state },
    })),
  };
}
