// TanStack Query keys and hooks for every API read; live events update these caches.
import { keepPreviousData, useInfiniteQuery, useQuery } from '@tanstack/react-query';
import { api, type TileJsonQuery } from './client';
import { filterToQuery, type JobFilter } from '../lib/filters';
import {
  chunkOf,
  FIRST_LOG_PAGE,
  LOG_MAX_PAGES,
  type LogChunk,
  type LogPageParam,
  type LogPages,
  LOG_PAGE_SIZE,
  nextLogPage,
  previousLogPage,
} from '../lib/logPages';

export const keys = {
  jobs: ['jobs'] as const,
  jobLists: ['jobs', 'list'] as const,
  jobList: (filter: JobFilter, cursor: string | null) =>
    ['jobs', 'list', filterToQuery(filter).toString(), cursor ?? ''] as const,
  job: (id: string) => ['jobs', 'detail', id] as const,
  tasks: (id: string) => ['jobs', 'tasks', id] as const,
  logs: (id: string) => ['jobs', 'logs', id] as const,
  footprints: (id: string) => ['jobs', 'footprints', id] as const,
  tileJson: (id: string, query: TileJsonQuery) => ['jobs', 'tilejson', id, query] as const,
  stac: (id: string) => ['jobs', 'stac', id] as const,
  recipes: ['recipes'] as const,
  workers: ['workers'] as const,
};

export const useJobList = (filter: JobFilter, cursor: string | null) =>
  useQuery({
    queryKey: keys.jobList(filter, cursor),
    queryFn: () => api.listJobs(filter, cursor),
    placeholderData: keepPreviousData,
  });

export const useJob = (id: string) => useQuery({ queryKey: keys.job(id), queryFn: () => api.getJob(id) });

export const useTasks = (id: string) => useQuery({ queryKey: keys.tasks(id), queryFn: () => api.tasks(id) });

/** The job's log as a window of pages (lib/logPages); live lines are appended by live/cache. */
export const useLogPages = (id: string) =>
  useInfiniteQuery<LogChunk, Error, LogPages, ReturnType<typeof keys.logs>, LogPageParam>({
    queryKey: keys.logs(id),
    queryFn: async ({ pageParam }) =>
      chunkOf((await api.logs(id, pageParam.after || null, LOG_PAGE_SIZE + 1)).items, LOG_PAGE_SIZE),
    initialPageParam: FIRST_LOG_PAGE,
    getNextPageParam: nextLogPage,
    getPreviousPageParam: previousLogPage,
    maxPages: LOG_MAX_PAGES,
  });

export const useFootprints = (id: string) =>
  useQuery({ queryKey: keys.footprints(id), queryFn: () => api.footprints(id) });

export const useTileJson = (id: string, query: TileJsonQuery, enabled: boolean) =>
  useQuery({
    queryKey: keys.tileJson(id, query),
    queryFn: () => api.tileJson(id, query),
    enabled,
    staleTime: Infinity,
    placeholderData: keepPreviousData,
  });

export const useStac = (id: string, enabled: boolean) =>
  useQuery({ queryKey: keys.stac(id), queryFn: () => api.stac(id), enabled, staleTime: Infinity });

export const useRecipes = () => useQuery({ queryKey: keys.recipes, queryFn: api.recipes, staleTime: 300_000 });

export const useWorkers = () => useQuery({ queryKey: keys.workers, queryFn: api.workers });
