// Tile progress bar: succeeded and failed segments with an accessible value and a text summary.
import { percent } from '../lib/format';

interface Props {
  succeeded: number;
  failed: number;
  total: number;
  label: string;
}

export function ProgressBar({ succeeded, failed, total, label }: Props) {
  const done_pct = percent(succeeded, total);
  const failed_pct = Math.min(100 - done_pct, percent(failed, total));
  const text = `${succeeded} / ${total} tiles${failed > 0 ? `, ${failed} failed` : ''}`;
  return (
    <div className="progress">
      <div
        className="progress-track"
        role="progressbar"
        aria-label={label}
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={done_pct}
        aria-valuetext={`${done_pct}% (${text})`}
      >
        <div className="progress-done" style={{ width: `${done_pct}%` }} />
        <div className="progress-failed" style={{ width: `${failed_pct}%` }} />
      </div>
      <span className="progress-text">{text}</span>
    </div>
  );
}
