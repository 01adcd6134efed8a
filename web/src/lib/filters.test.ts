// Tests for jobs-list filters: URL round trips, validation of bad input, and the bulk-request body.
import { describe, expect, it } from 'vitest';
import {
  activeFilterCount,
  EMPTY_FILTER,
  filterToBody,
  filterToQuery,
  isEmptyFilter,
  parseBbox,
  parseFilter,
  type JobFilter,
} from './filters';

const full: JobFilter = {
  state: ['running', 'failed'],
  recipe: 'ndvi-landsat-c2l2',
  q: 'alps & lakes',
  created_after: '2026-01-02T03:04:05.000Z',
  created_before: '2026-02-01T00:00:00.000Z',
  bbox: [5.9, 45.8, 10.5, 47.8],
};

describe('filters', () => {
  it('counts the fields that narrow the list', () => {
    expect(activeFilterCount(EMPTY_FILTER)).toBe(0);
    expect(activeFilterCount({ ...EMPTY_FILTER, state: ['failed', 'cancelled'] })).toBe(1);
    expect(activeFilterCount(full)).toBe(6);
  });

  it('round-trips every field through the query string', () => {
    const text = filterToQuery(full).toString();
    expect(parseFilter(new URLSearchParams(text))).toEqual(full);
  });

  it('round-trips the empty filter as an empty query string', () => {
    expect(filterToQuery(EMPTY_FILTER).toString()).toBe('');
    expect(parseFilter(new URLSearchParams(''))).toEqual(EMPTY_FILTER);
    expect(isEmptyFilter(EMPTY_FILTER)).toBe(true);
    expect(isEmptyFilter({ ...EMPTY_FILTER, q: 'x' })).toBe(false);
  });

  it('round-trips each single field on its own', () => {
    for (const key of Object.keys(full) as (keyof JobFilter)[]) {
      const one = { ...EMPTY_FILTER, [key]: full[key] };
      expect(parseFilter(filterToQuery(one))).toEqual(one);
    }
  });

  it('writes states comma-separated in canonical order and drops unknown ones', () => {
    const parsed = parseFilter(new URLSearchParams('state=failed,bogus,queued'));
    expect(parsed.state).toEqual(['queued', 'failed']);
    expect(filterToQuery(parsed).get('state')).toBe('queued,failed');
  });

  it('normalises dates to ISO instants and drops unparseable ones', () => {
    const parsed = parseFilter(
      new URLSearchParams('created_after=2026-03-04T05:06:07%2B02:00&created_before=yesterday'),
    );
    expect(parsed.created_after).toBe('2026-03-04T03:06:07.000Z');
    expect(parsed.created_before).toBe('');
  });

  it('accepts only valid bboxes', () => {
    expect(parseBbox(' -10, -5 ,10,5 ')).toEqual([-10, -5, 10, 5]);
    expect(parseBbox('1,2,3')).toBeNull();
    expect(parseBbox('1,2,3,x')).toBeNull();
    expect(parseBbox('10,0,5,5')).toBeNull(); // min after max
    expect(parseBbox('0,0,0,5')).toBeNull(); // no width
    expect(parseBbox('-181,0,5,5')).toBeNull();
    expect(parseBbox('0,-91,5,5')).toBeNull();
    expect(parseBbox('1,,3,4')).toBeNull();
    expect(parseBbox(null)).toBeNull();
  });

  it('builds the bulk filter body with only the set fields', () => {
    expect(filterToBody(EMPTY_FILTER)).toEqual({});
    expect(filterToBody(full)).toEqual({
      state: 'running,failed',
      recipe: 'ndvi-landsat-c2l2',
      q: 'alps & lakes',
      created_after: '2026-01-02T03:04:05.000Z',
      created_before: '2026-02-01T00:00:00.000Z',
      bbox: '5.9,45.8,10.5,47.8',
    });
  });
});
