// The job detail's "failed tiles": failed tasks (and ones waiting to retry) listed with their errors, tasks
// a cancel or a failed job ended summed up as counts by reason, and the list shown a part at a time.
import type { Task } from '../api/types';

/** Failures shown at first, and how many more each "show more" adds. */
export const FAILURES_SHOWN = 20;
export const FAILURES_STEP = 50;

export interface CancelledReason {
  reason: string;
  tiles: number;
  /** Whether the finalize task is among them. */
  finalize: boolean;
}

export interface TaskProblems {
  /** Failed tasks, and tasks whose last attempt failed and that wait for another, in id order. */
  failures: Task[];
  /** Tasks ended unrun, by reason, most frequent first. */
  cancelled: CancelledReason[];
  cancelled_tiles: number;
}

export function taskProblems(tasks: readonly Task[]): TaskProblems {
  const failures: Task[] = [];
  const by_reason = new Map<string, CancelledReason>();
  let cancelled_tiles = 0;
  for (const task of tasks) {
    if (task.state === 'cancelled') {
      const reason = task.error ?? 'no reason given';
      const entry = by_reason.get(reason) ?? { reason, tiles: 0, finalize: false };
      if (task.kind === 'finalize') entry.finalize = true;
      else {
        entry.tiles += 1;
        cancelled_tiles += 1;
      }
      by_reason.set(reason, entry);
    } else if (task.state === 'failed' || (task.error && (task.state === 'queued' || task.state === 'running'))) {
      failures.push(task);
    }
  }
  const cancelled = [...by_reason.values()].sort((a, b) => b.tiles - a.tiles || a.reason.localeCompare(b.reason));
  return { failures, cancelled, cancelled_tiles };
}

/** "12 tiles cancelled", "1 tile and the finalize task cancelled", "the finalize task cancelled". */
export function cancelledText({ tiles, finalize }: Pick<CancelledReason, 'tiles' | 'finalize'>): string {
  const parts = [];
  if (tiles > 0) parts.push(`${tiles} ${tiles === 1 ? 'tile' : 'tiles'}`);
  if (finalize) parts.push('the finalize task');
  return `${parts.join(' and ')} cancelled`;
}

/** How many failures the next "show more" reveals (0: all shown). */
export function moreToShow(total: number, shown: number, step = FAILURES_STEP): number {
  return Math.max(0, Math.min(step, total - shown));
}
