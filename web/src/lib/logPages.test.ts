// Tests of the log window: forward paging with `after`, dropping and reloading pages, live appends.
import { describe, expect, it } from 'vitest';
import type { LogEntry } from '../api/types';
import {
  appendLiveLog,
  chunkOf,
  FIRST_LOG_PAGE,
  followsLive,
  lastLogId,
  linesBefore,
  logLines,
  nextLogPage,
  previousLogPage,
  type LogChunk,
  type LogPageParam,
  type LogPages,
} from './logPages';

const line = (id: number): LogEntry => ({ id, ts: '2026-01-01T00:00:00Z', level: 'info', message: `line ${id}`, task_id: null });
/** Server lines with ids 10, 20, 30, … (ids are global, so not dense per job). */
const server = Array.from({ length: 23 }, (_, i) => line((i + 1) * 10));
/** What the API answers to `?after=&limit=`. */
const fetchAfter = (after: number, limit: number) => server.filter((l) => l.id > after).slice(0, limit);

const PAGE = 5;
const MAX = 3;

/** Runs the infinite query's fetchNextPage/fetchPreviousPage by hand, with TanStack's maxPages dropping. */
function next(data: LogPages): LogPages {
  const i = data.pages.length - 1;
  const param = nextLogPage(data.pages[i]!, data.pages, data.pageParams[i]!);
  if (!param) throw new Error('no next page');
  const pages = [...data.pages, chunkOf(fetchAfter(param.after, PAGE + 1), PAGE)];
  const params = [...data.pageParams, param];
  const drop = Math.max(0, pages.length - MAX);
  return { pages: pages.slice(drop), pageParams: params.slice(drop) };
}
function previous(data: LogPages): LogPages {
  const param = previousLogPage(data.pages[0]!, data.pages, data.pageParams[0]!);
  if (!param) throw new Error('no previous page');
  const pages = [chunkOf(fetchAfter(param.after, PAGE + 1), PAGE), ...data.pages].slice(0, MAX);
  const params = [param, ...data.pageParams].slice(0, MAX);
  return { pages, pageParams: params };
}
const first = (): LogPages => ({ pages: [chunkOf(fetchAfter(0, PAGE + 1), PAGE)], pageParams: [FIRST_LOG_PAGE] });
const ids = (data: LogPages) => logLines(data).map((l) => l.id);
const hasNext = (data: LogPages) =>
  nextLogPage(data.pages.at(-1)!, data.pages, data.pageParams.at(-1)!) !== undefined;
const hasPrevious = (data: LogPages) => previousLogPage(data.pages[0]!, data.pages, data.pageParams[0]!) !== undefined;

describe('log paging', () => {
  it('reads a page plus one line to know whether more follow', () => {
    expect(chunkOf(fetchAfter(0, PAGE + 1), PAGE)).toEqual({ items: server.slice(0, 5), more: true });
    expect(chunkOf(fetchAfter(200, PAGE + 1), PAGE)).toEqual({ items: server.slice(20), more: false });
    expect(chunkOf([], PAGE)).toEqual({ items: [], more: false });
  });

  it('pages forward from the largest server id, ignoring live lines without one', () => {
    expect(lastLogId([line(10), line(-7), line(30)], 0)).toBe(30);
    expect(lastLogId([], 40)).toBe(40);
    const param = nextLogPage({ items: [line(60), line(70), line(-3)], more: true }, [], { after: 50, before: [0] });
    expect(param).toEqual({ after: 70, before: [0, 50] });
    expect(nextLogPage({ items: [line(60)], more: false }, [], { after: 50, before: [0] })).toBeUndefined();
  });

  it('walks the whole log forward, keeping at most MAX pages, and back again', () => {
    let data = first();
    expect(ids(data)).toEqual([10, 20, 30, 40, 50]);
    expect(linesBefore(data, PAGE)).toBe(0);
    expect(hasPrevious(data)).toBe(false);
    expect(followsLive(data)).toBe(false);
    data = next(next(data));
    expect(ids(data)).toEqual(server.slice(0, 15).map((l) => l.id));
    data = next(data); // 4th page: the first one is dropped
    expect(data.pages).toHaveLength(MAX);
    expect(ids(data)).toEqual(server.slice(5, 20).map((l) => l.id));
    expect(linesBefore(data, PAGE)).toBe(5);
    data = next(data); // the last 3 lines: the end of the log
    expect(ids(data)).toEqual(server.slice(10).map((l) => l.id));
    expect(linesBefore(data, PAGE)).toBe(10);
    expect(hasNext(data)).toBe(false);
    expect(followsLive(data)).toBe(true);
    // Back: each "older" page is the one that was dropped, read again with its own `after`.
    data = previous(data);
    expect(ids(data)).toEqual(server.slice(5, 20).map((l) => l.id));
    expect(linesBefore(data, PAGE)).toBe(5);
    expect(hasNext(data)).toBe(true);
    expect(followsLive(data)).toBe(false);
    data = previous(data);
    expect(ids(data)).toEqual(server.slice(0, 15).map((l) => l.id));
    expect(hasPrevious(data)).toBe(false);
    expect(data.pageParams[0]).toEqual(FIRST_LOG_PAGE);
  });

  it('the line number of the window start is exact', () => {
    let data = first();
    for (let i = 0; i < 4; i += 1) data = next(data);
    const numbered = logLines(data).map((l, i) => [linesBefore(data, PAGE) + i + 1, l.id]);
    // line n of the log has id 10·n
    expect(numbered.every(([n, id]) => id === n! * 10)).toBe(true);
  });
});

describe('appendLiveLog', () => {
  const at = (items: LogEntry[], more: boolean, param: LogPageParam = FIRST_LOG_PAGE): LogPages => ({
    pages: [{ items, more }],
    pageParams: [param],
  });

  it('appends a live line when the window reaches the end of the log, once', () => {
    const data = at([line(10)], false);
    const once = appendLiveLog(data, line(20), PAGE, MAX);
    expect(ids(once)).toEqual([10, 20]);
    expect(appendLiveLog(once, line(20), PAGE, MAX)).toBe(once);
  });

  it('ignores live lines while newer stored lines are still to be loaded', () => {
    const data = at([line(10)], true);
    expect(appendLiveLog(data, line(99), PAGE, MAX)).toBe(data);
    expect(appendLiveLog({ pages: [], pageParams: [] }, line(99), PAGE, MAX).pages).toEqual([]);
  });

  it('splits a full last page and drops the oldest past the cap, so a followed log stays bounded', () => {
    let data = at([], false);
    for (let id = 1; id <= 17; id += 1) data = appendLiveLog(data, line(id), PAGE, MAX);
    // 17 lines = pages 1–5, 6–10, 11–15, 16–17; the first was dropped
    expect(data.pages.map((p: LogChunk) => [p.items.length, p.more])).toEqual([
      [5, true],
      [5, true],
      [2, false],
    ]);
    expect(ids(data)).toEqual([6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]);
    expect(data.pageParams.map((p) => p.after)).toEqual([5, 10, 15]);
    expect(linesBefore(data, PAGE)).toBe(5);
    expect(followsLive(data)).toBe(true);
    // The dropped page can be read again with the `after` it was stored under.
    expect(previousLogPage(data.pages[0]!, data.pages, data.pageParams[0]!)).toEqual({ after: 0, before: [] });
  });
});
