// Map legend: tile-state colour swatches with names, plus the output layer's colour ramp and value range.
import { TASK_STATES } from '../api/types';
import { colormapGradient, type ColormapName } from '../lib/outputStyle';
import { STATE_COLORS } from '../theme';

export interface OutputLegend {
  colormap: ColormapName;
  /** The values at the ramp's ends; null when not known. */
  range: [number, number] | null;
}

const formatValue = (value: number) => String(Number(value.toPrecision(4)));

export function Legend({ output }: { output: OutputLegend | null }) {
  return (
    <div className="legend" aria-label="map legend" role="group">
      <ul>
        {TASK_STATES.map((state) => (
          <li key={state}>
            <span className="swatch" style={{ background: STATE_COLORS[state] }} aria-hidden="true" />
            {state}
          </li>
        ))}
      </ul>
      {output && (
        <div className="ramp">
          <span>output ({output.colormap})</span>
          <span className="ramp-row">
            <span>{output.range ? formatValue(output.range[0]) : 'band min'}</span>
            <span className="ramp-bar" style={{ background: colormapGradient(output.colormap) }} aria-hidden="true" />
            <span>{output.range ? formatValue(output.range[1]) : 'band max'}</span>
          </span>
        </div>
      )}
    </div>
  );
}
