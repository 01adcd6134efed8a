// A job/task state shown as its name with a coloured dot.
import type { TaskState } from '../api/types';

export function StateBadge({ state }: { state: TaskState }) {
  return (
    <span className="badge">
      <span className="dot" style={{ background: `var(--state-${state})` }} aria-hidden="true" />
      {state}
    </span>
  );
}
