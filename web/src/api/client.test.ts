// Tests for the fetch client: query strings and problem+json errors.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { api, ProblemError, searchOf } from './client';
import { EMPTY_FILTER } from '../lib/filters';

afterEach(() => vi.unstubAllGlobals());

describe('api client', () => {
  it('writes query strings without undefined parameters', () => {
    expect(searchOf({ a: 1, b: undefined, c: 'x y' })).toBe('?a=1&c=x+y');
    expect(searchOf({ b: undefined })).toBe('');
  });

  it('lists jobs with the filter, limit and cursor', async () => {
    const fetch = vi.fn(async (_url: string) => new Response('{"items":[],"next_cursor":null}', { status: 200 }));
    vi.stubGlobal('fetch', fetch);
    await api.listJobs({ ...EMPTY_FILTER, state: ['failed'], bbox: [1, 2, 3, 4] }, 'c9');
    expect(fetch.mock.calls[0]?.[0]).toBe('/v1/jobs?state=failed&bbox=1%2C2%2C3%2C4&limit=50&cursor=c9');
  });

  it('turns a problem+json answer into a ProblemError with its field errors', async () => {
    const problem = {
      type: 'about:blank',
      title: 'unprocessable',
      status: 422,
      detail: 'inputs.0.path: no such file',
      errors: [{ field: 'inputs.0.path', message: 'no such file' }],
    };
    vi.stubGlobal('fetch', async () => new Response(JSON.stringify(problem), { status: 422 }));
    const error = await api.getJob('j1').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ProblemError);
    expect(error).toMatchObject({ status: 422, detail: 'inputs.0.path: no such file', field_errors: problem.errors });
  });

  it('keeps a useful message when the error body is not JSON', async () => {
    vi.stubGlobal(
      'fetch',
      async () => new Response('upstream timed out', { status: 504, statusText: 'Gateway Timeout' }),
    );
    const error = (await api.workers().catch((e: unknown) => e)) as ProblemError;
    expect(error.status).toBe(504);
    expect(error.detail).toBe('upstream timed out');
  });
});
