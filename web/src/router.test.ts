// Tests for the hash router's parsing and path matching.
import { describe, expect, it } from 'vitest';
import { hrefFor, matchPath, parseHash } from './router';

describe('router', () => {
  it('parses paths and queries from the hash', () => {
    expect(parseHash('').path).toBe('/');
    const location = parseHash('#/jobs?state=failed,queued&q=a%20b');
    expect(location.path).toBe('/jobs');
    expect(location.query.get('state')).toBe('failed,queued');
    expect(location.query.get('q')).toBe('a b');
  });

  it('round-trips through hrefFor', () => {
    const href = hrefFor('/jobs', new URLSearchParams({ q: 'x&y', cursor: 'abc' }));
    const location = parseHash(href);
    expect(location.path).toBe('/jobs');
    expect(Object.fromEntries(location.query)).toEqual({ q: 'x&y', cursor: 'abc' });
    expect(hrefFor('/submit')).toBe('#/submit');
  });

  it('matches named segments', () => {
    expect(matchPath('/jobs/:id', '/jobs/0b7e')).toEqual({ id: '0b7e' });
    expect(matchPath('/jobs/:id', '/jobs')).toBeNull();
    expect(matchPath('/jobs/:id', '/workers/1')).toBeNull();
  });
});
