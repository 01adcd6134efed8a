// Tests of the failed-tiles summary: failures listed, cancelled tasks counted by reason, shown a part at a time.
import { describe, expect, it } from 'vitest';
import type { Task } from '../api/types';
import { cancelledText, FAILURES_SHOWN, FAILURES_STEP, moreToShow, taskProblems } from './taskProblems';

let next_id = 0;
function task(state: Task['state'], error: string | null, kind: Task['kind'] = 'tile'): Task {
  next_id += 1;
  return {
    id: next_id,
    kind,
    tile_index: kind === 'tile' ? next_id : null,
    state,
    attempt: 1,
    max_attempts: 3,
    worker_id: null,
    error,
  };
}

describe('taskProblems', () => {
  it('lists failures and counts a cancelled job’s unrun tiles instead of listing them', () => {
    const tasks = [
      ...Array.from({ length: 3 }, () => task('succeeded', null)),
      task('failed', 'read error: short read'),
      ...Array.from({ length: 250 }, () => task('cancelled', 'cancelled by request')),
      task('cancelled', 'cancelled by request', 'finalize'),
    ];
    const problems = taskProblems(tasks);
    expect(problems.failures.map((t) => t.error)).toEqual(['read error: short read']);
    expect(problems.cancelled).toEqual([{ reason: 'cancelled by request', tiles: 250, finalize: true }]);
    expect(problems.cancelled_tiles).toBe(250);
    expect(cancelledText(problems.cancelled[0]!)).toBe('250 tiles and the finalize task cancelled');
  });

  it('keeps tasks waiting to retry with their last error, and leaves succeeded and untouched ones out', () => {
    const retrying = task('queued', 'timed out');
    const running_again = task('running', 'lease lost');
    const problems = taskProblems([task('queued', null), task('succeeded', 'old error'), retrying, running_again]);
    expect(problems.failures).toEqual([retrying, running_again]);
    expect(problems.cancelled).toEqual([]);
  });

  it('groups cancelled tasks by reason, most frequent first', () => {
    const tasks = [
      task('cancelled', 'tile 3 failed after 3 attempts'),
      task('cancelled', null),
      task('cancelled', 'tile 3 failed after 3 attempts'),
    ];
    expect(taskProblems(tasks).cancelled).toEqual([
      { reason: 'tile 3 failed after 3 attempts', tiles: 2, finalize: false },
      { reason: 'no reason given', tiles: 1, finalize: false },
    ]);
  });

  it('words counts', () => {
    expect(cancelledText({ tiles: 1, finalize: false })).toBe('1 tile cancelled');
    expect(cancelledText({ tiles: 0, finalize: true })).toBe('the finalize task cancelled');
  });
});

describe('moreToShow', () => {
  it('reveals a step at a time, then nothing', () => {
    expect(moreToShow(200, FAILURES_SHOWN)).toBe(FAILURES_STEP);
    expect(moreToShow(30, FAILURES_SHOWN)).toBe(10);
    expect(moreToShow(20, FAILURES_SHOWN)).toBe(0);
    expect(moreToShow(5, FAILURES_SHOWN)).toBe(0);
  });
});
