// Jobs-list filter model and its (de)serialisation to URL query strings and API request bodies.
import { JOB_STATES, type JobFilterBody, type JobState } from '../api/types';

export type BBox = [number, number, number, number];

export interface JobFilter {
  state: JobState[];
  recipe: string;
  q: string;
  /** ISO 8601 instant, or '' for no bound. */
  created_after: string;
  created_before: string;
  bbox: BBox | null;
}

export const EMPTY_FILTER: JobFilter = {
  state: [],
  recipe: '',
  q: '',
  created_after: '',
  created_before: '',
  bbox: null,
};

/** Parses "minx,miny,maxx,maxy" in degrees; null unless it is a valid, non-empty box. */
export function parseBbox(text: string | null): BBox | null {
  if (!text) return null;
  const parts = text.split(',').map((part) => part.trim());
  if (parts.length !== 4 || parts.some((part) => part === '')) return null;
  const [minx, miny, maxx, maxy] = parts.map(Number) as BBox;
  if (![minx, miny, maxx, maxy].every(Number.isFinite)) return null;
  if (minx < -180 || maxx > 180 || miny < -90 || maxy > 90) return null;
  if (minx >= maxx || miny >= maxy) return null;
  return [minx, miny, maxx, maxy];
}

function parseInstant(text: string | null): string {
  if (!text) return '';
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? '' : new Date(ms).toISOString();
}

function isJobState(value: string): value is JobState {
  return (JOB_STATES as readonly string[]).includes(value);
}

export function parseFilter(params: URLSearchParams): JobFilter {
  const states = (params.get('state') ?? '')
    .split(',')
    .map((state) => state.trim())
    .filter(isJobState);
  return {
    state: JOB_STATES.filter((state) => states.includes(state)),
    recipe: (params.get('recipe') ?? '').trim(),
    q: (params.get('q') ?? '').trim(),
    created_after: parseInstant(params.get('created_after')),
    created_before: parseInstant(params.get('created_before')),
    bbox: parseBbox(params.get('bbox')),
  };
}

/** The filter's wire form: the same names and encodings in the page URL, GET /v1/jobs and the bulk body. */
export interface JobFilterParams {
  state?: string;
  recipe?: string;
  q?: string;
  created_after?: string;
  created_before?: string;
  bbox?: string;
}

/** How many of the filter's fields narrow the list (the phone's collapsed filter button shows it). */
export function activeFilterCount(filter: JobFilter): number {
  return Object.keys(filterToParams(filter)).length;
}

export function filterToParams(filter: JobFilter): JobFilterParams {
  const params: JobFilterParams = {};
  if (filter.state.length > 0) params.state = filter.state.join(',');
  if (filter.recipe) params.recipe = filter.recipe;
  if (filter.q) params.q = filter.q;
  if (filter.created_after) params.created_after = filter.created_after;
  if (filter.created_before) params.created_before = filter.created_before;
  if (filter.bbox) params.bbox = filter.bbox.join(',');
  return params;
}

/** The filter as a query string, empty fields left out. */
export function filterToQuery(filter: JobFilter): URLSearchParams {
  return new URLSearchParams({ ...filterToParams(filter) });
}

/** The filter as the `filter` object of POST /v1/jobs/bulk. */
export function filterToBody(filter: JobFilter): JobFilterBody {
  return filterToParams(filter);
}

export function isEmptyFilter(filter: JobFilter): boolean {
  return filterToQuery(filter).toString() === '';
}
