// A small SVG line chart of recent values with its latest reading as text (no charting library).
interface Props {
  label: string;
  values: number[];
  /** Fixed y range; defaults to the data's own range. */
  min?: number;
  max?: number;
  format: (value: number) => string;
  width_px?: number;
  height_px?: number;
}

export function sparklinePoints(
  values: number[],
  width_px: number,
  height_px: number,
  min: number,
  max: number,
): string {
  if (values.length === 0) return '';
  const span = max - min || 1;
  const step_px = values.length > 1 ? width_px / (values.length - 1) : 0;
  return values
    .map((value, i) => {
      const clamped = Math.min(max, Math.max(min, value));
      const y_px = height_px - ((clamped - min) / span) * height_px;
      return `${(i * step_px).toFixed(1)},${y_px.toFixed(1)}`;
    })
    .join(' ');
}

export function Sparkline({ label, values, min, max, format, width_px = 160, height_px = 36 }: Props) {
  const lo = min ?? Math.min(...values);
  const hi = max ?? Math.max(...values);
  const latest = values[values.length - 1];
  const summary = latest === undefined ? `${label}: no samples` : `${label}: ${format(latest)}`;
  return (
    <figure className="sparkline">
      <figcaption>
        <span>{label}</span> <strong>{latest === undefined ? '–' : format(latest)}</strong>
      </figcaption>
      <svg
        role="img"
        aria-label={summary}
        viewBox={`0 0 ${width_px} ${height_px}`}
        width={width_px}
        height={height_px}
        preserveAspectRatio="none"
      >
        <rect x="0" y="0" width={width_px} height={height_px} className="sparkline-bg" />
        {values.length > 0 && (
          <polyline
            points={sparklinePoints(values, width_px, height_px, lo, hi)}
            fill="none"
            className="sparkline-line"
            vectorEffect="non-scaling-stroke"
          />
        )}
      </svg>
    </figure>
  );
}
