// Names for the API's wire types from the OpenAPI-generated schema, plus hand-written shapes the document leaves open.
import type { components } from './schema';

type Schemas = components['schemas'];

export type Job = Schemas['JobDto'];
export type JobState = Schemas['JobStateDto'];
export type JobInput = Schemas['InputDto'];
export type JobPage = Schemas['JobPage'];
export type JobFilterBody = Schemas['JobFilterDto'];
export type BulkRequest = Schemas['BulkRequest'];
export type BulkAction = Schemas['BulkAction'];
export type BulkResult = Schemas['BulkResult'];
export type Task = Schemas['TaskDto'];
export type TaskState = Schemas['TaskStateDto'];
export type TaskList = Schemas['TaskList'];
export type LogEntry = Schemas['LogDto'];
export type LogList = Schemas['LogPage'];
export type Recipe = Schemas['RecipeDto'];
export type RecipeList = Schemas['RecipeList'];
export type Worker = Schemas['WorkerDto'];
export type WorkerList = Schemas['WorkerList'];
export type GpuSample = Schemas['GpuSampleDto'];
export type Problem = Schemas['Problem'];
export type FieldError = Schemas['FieldError'];

/* The document types the following only as "object"; their shapes come from the API's descriptions. */

/** GeoJSON Polygon in EPSG:4326 degrees. */
export interface Polygon {
  type: 'Polygon';
  coordinates: number[][][];
}

/** One tile footprint: `id` is the tile index (FeatureCollection description in the document). */
export interface Footprint {
  type: 'Feature';
  id: number;
  geometry: Polygon;
  properties: { tile_index: number; state: TaskState; job_id?: string };
}

export interface FootprintCollection {
  type: 'FeatureCollection';
  features: Footprint[];
}

/** TileJSON 3.0.0 as GET /v1/jobs/{id}/tilejson writes it. */
export interface TileJson {
  tilejson: string;
  tiles: string[];
  minzoom: number;
  maxzoom: number;
  bounds?: number[];
  name?: string;
}

/** A GPU from a worker's registered inventory (engine::gpu::GpuInfo); every field may be missing. */
export interface GpuInfo {
  index: number;
  name?: string;
  uuid?: string;
  memory_total_bytes?: number;
}

/**
 * POST /v1/jobs body. `aoi` is in the web contract but not yet in the server's CreateJob
 * (which rejects unknown fields), so it is sent only when the user draws one.
 */
export type CreateJob = Schemas['CreateJob'] & { aoi?: Polygon };

export const JOB_STATES: readonly JobState[] = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];
export const TASK_STATES: readonly TaskState[] = ['blocked', 'queued', 'running', 'succeeded', 'failed', 'cancelled'];
