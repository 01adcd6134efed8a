// Paging a job's log with the API's `after` cursor: pages of LOG_PAGE_SIZE lines, oldest first, at most
// LOG_MAX_PAGES on screen. Pure functions behind the log view's infinite query and its live appends.
//
// The API only pages forward (`?after=<id>&limit=`), so every page remembers the `after` of each page before
// it: a page dropped from the start of the window can be read again ("load older"), and the number of lines
// above the window is known (every page that has a successor is full).
import type { InfiniteData } from '@tanstack/react-query';
import type { LogEntry } from '../api/types';

/** Lines per page; one more is asked for, to know whether more follow. */
export const LOG_PAGE_SIZE = 500;
/** Pages kept in the window (2000 lines); reading on drops pages at the other end. */
export const LOG_MAX_PAGES = 4;

/** Where a page starts: lines after `after` (an id; 0 = the start), and the `after` of every earlier page. */
export interface LogPageParam {
  after: number;
  before: number[];
}

/** One page of lines; `more`: the server had lines after it when it was read (or it filled up live). */
export interface LogChunk {
  items: LogEntry[];
  more: boolean;
}

export type LogPages = InfiniteData<LogChunk, LogPageParam>;

export const FIRST_LOG_PAGE: LogPageParam = { after: 0, before: [] };

/** A page from the lines the server answered to `limit = page_size + 1`. */
export function chunkOf(fetched: LogEntry[], page_size = LOG_PAGE_SIZE): LogChunk {
  return { items: fetched.slice(0, page_size), more: fetched.length > page_size };
}

/** The cursor after a page: its largest server id (live lines without one have negative ids), else `after`. */
export function lastLogId(items: LogEntry[], after: number): number {
  return items.reduce((max, entry) => (entry.id > max ? entry.id : max), after);
}

/** getNextPageParam: the page after `last`, when the server had more. */
export function nextLogPage(last: LogChunk, _pages: LogChunk[], param: LogPageParam): LogPageParam | undefined {
  if (!last.more) return undefined;
  return { after: lastLogId(last.items, param.after), before: [...param.before, param.after] };
}

/** getPreviousPageParam: the page before the window's first one, when one was dropped. */
export function previousLogPage(_first: LogChunk, _pages: LogChunk[], param: LogPageParam): LogPageParam | undefined {
  const after = param.before.at(-1);
  return after === undefined ? undefined : { after, before: param.before.slice(0, -1) };
}

/** Lines above the window (not loaded): every earlier page was full. */
export function linesBefore(data: LogPages, page_size = LOG_PAGE_SIZE): number {
  return (data.pageParams[0]?.before.length ?? 0) * page_size;
}

/** Whether the window ends at the end of the stored log, so live lines are appended to it. */
export function followsLive(data: LogPages): boolean {
  const last = data.pages.at(-1);
  return last !== undefined && !last.more;
}

/**
 * A live line folded into the window. Kept only when the window reaches the end of the log (otherwise "load
 * newer" reads it from the server); a full last page is split so pages stay `page_size` long, and pages beyond
 * `max_pages` are dropped from the start (they can be loaded again). The same object when nothing changes.
 */
export function appendLiveLog(
  data: LogPages,
  entry: LogEntry,
  page_size = LOG_PAGE_SIZE,
  max_pages = LOG_MAX_PAGES,
): LogPages {
  const last = data.pages.at(-1);
  const last_param = data.pageParams.at(-1);
  if (!last || !last_param || last.more) return data;
  if (data.pages.some((page) => page.items.some((line) => line.id === entry.id))) return data;
  const items = [...last.items, entry];
  let pages = [...data.pages.slice(0, -1), { items, more: false }];
  let params = [...data.pageParams];
  if (items.length > page_size) {
    const full = items.slice(0, page_size);
    pages = [...data.pages.slice(0, -1), { items: full, more: true }, { items: items.slice(page_size), more: false }];
    params = [
      ...params,
      { after: lastLogId(full, last_param.after), before: [...last_param.before, last_param.after] },
    ];
  }
  const drop = Math.max(0, pages.length - max_pages);
  return { pages: pages.slice(drop), pageParams: params.slice(drop) };
}

/** Every line in the window, oldest first. */
export function logLines(data: LogPages | undefined): LogEntry[] {
  return data ? data.pages.flatMap((page) => page.items) : [];
}
