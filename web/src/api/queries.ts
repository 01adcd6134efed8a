// TanStack Query keys and hooks for every API read; live events update these caches.
import { keepPreviousData, useQuery } from '@tanstack/react-query';
import { api, type TileJsonQuery } from './client';
import { filterToQuery, type JobFilter } from '../lib/filters';

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

export const useLogs = (id: string) => useQuery({ queryKey: keys.logs(id), queryFn: () => api.logs(id, null) });

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
