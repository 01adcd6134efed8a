// Typed fetch client for the /v1 REST API; non-2xx answers become ProblemError (RFC 7807).
import type {
  BulkRequest,
  BulkResult,
  CreateJob,
  FieldError,
  FootprintCollection,
  Job,
  JobPage,
  LogList,
  Problem,
  RecipeList,
  TaskList,
  TileJson,
  WorkerList,
} from './types';
import type { operations } from './schema';
import { filterToParams, type JobFilter } from '../lib/filters';

type QueryOf<Operation extends keyof operations> = NonNullable<operations[Operation]['parameters']['query']>;
export type TileJsonQuery = QueryOf<'tilejson'>;

/** "?a=1&b=x" from typed query parameters, undefined ones left out; '' when none remain. */
export function searchOf(params: Record<string, string | number | undefined>): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined) search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

export class ProblemError extends Error {
  readonly status: number;
  readonly title: string;
  readonly detail: string;
  readonly field_errors: FieldError[];

  constructor(problem: Problem) {
    super(problem.detail || problem.title);
    this.name = 'ProblemError';
    this.status = problem.status;
    this.title = problem.title;
    this.detail = problem.detail;
    this.field_errors = problem.errors ?? [];
  }
}

async function toProblem(response: Response): Promise<Problem> {
  const fallback: Problem = {
    type: 'about:blank',
    title: response.statusText || 'request failed',
    status: response.status,
    detail: `${response.status} ${response.statusText}`.trim(),
  };
  const text = await response.text().catch(() => '');
  if (!text) return fallback;
  try {
    const body = JSON.parse(text) as Partial<Problem>;
    return { ...fallback, ...body, status: body.status ?? response.status };
  } catch {
    return { ...fallback, detail: text.slice(0, 500) };
  }
}

async function request<T>(path: string, init: RequestInit = {}): Promise<T> {
  const headers = new Headers(init.headers);
  headers.set('accept', 'application/json, application/problem+json');
  if (init.body !== undefined) headers.set('content-type', 'application/json');
  const response = await fetch(path, { ...init, headers });
  if (!response.ok) throw new ProblemError(await toProblem(response));
  if (response.status === 204) return undefined as T;
  return (await response.json()) as T;
}

const jobPath = (id: string) => `/v1/jobs/${encodeURIComponent(id)}`;

export const api = {
  listJobs(filter: JobFilter, cursor: string | null, limit = 50): Promise<JobPage> {
    const query: QueryOf<'list_jobs'> = { ...filterToParams(filter), limit, cursor: cursor ?? undefined };
    return request(`/v1/jobs${searchOf({ ...query })}`);
  },
  getJob: (id: string): Promise<Job> => request(jobPath(id)),
  createJob: (body: CreateJob): Promise<Job> => request('/v1/jobs', { method: 'POST', body: JSON.stringify(body) }),
  cancelJob: (id: string): Promise<Job> => request(`${jobPath(id)}/cancel`, { method: 'POST' }),
  retryJob: (id: string): Promise<Job> => request(`${jobPath(id)}/retry`, { method: 'POST' }),
  deleteJob: (id: string): Promise<void> => request(jobPath(id), { method: 'DELETE' }),
  bulk: (body: BulkRequest): Promise<BulkResult> =>
    request('/v1/jobs/bulk', { method: 'POST', body: JSON.stringify(body) }),
  tasks: (id: string): Promise<TaskList> => request(`${jobPath(id)}/tasks`),
  logs: (id: string, after: number | null, limit = 1000): Promise<LogList> => {
    const query: QueryOf<'job_logs'> = { after: after ?? undefined, limit };
    return request(`${jobPath(id)}/logs${searchOf({ ...query })}`);
  },
  footprints: (id: string): Promise<FootprintCollection> => request(`${jobPath(id)}/footprints`),
  tileJson: (id: string, query: TileJsonQuery): Promise<TileJson> =>
    request(`${jobPath(id)}/tilejson${searchOf({ ...query })}`),
  /** The STAC Item as JSON; its shape belongs to STAC, not to this API. */
  stac: (id: string): Promise<unknown> => request(`${jobPath(id)}/stac`),
  recipes: (): Promise<RecipeList> => request('/v1/recipes'),
  workers: (): Promise<WorkerList> => request('/v1/workers'),
};
