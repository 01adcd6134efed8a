// Controls for a succeeded job's output layer: visibility, colormap, value range and opacity.
import { useId, useState } from 'react';
import { COLORMAPS, parseRescale, type ColormapName, type OutputStyle } from '../lib/outputStyle';

interface Props {
  visible: boolean;
  onVisibleChange: (visible: boolean) => void;
  style: OutputStyle;
  onStyleChange: (style: OutputStyle) => void;
  opacity_pct: number;
  onOpacityChange: (opacity_pct: number) => void;
}

export function OutputControls({
  visible,
  onVisibleChange,
  style,
  onStyleChange,
  opacity_pct,
  onOpacityChange,
}: Props) {
  const id = useId();
  const [rescale_text, setRescaleText] = useState(style.rescale?.join(',') ?? '');
  const rescale_invalid = rescale_text.trim() !== '' && parseRescale(rescale_text) === null;
  return (
    <fieldset className="output-controls">
      <legend>Output layer</legend>
      <label className="check">
        <input type="checkbox" checked={visible} onChange={(e) => onVisibleChange(e.target.checked)} />
        Show output
      </label>
      <div className="field">
        <label htmlFor={`${id}-colormap`}>Colormap</label>
        <select
          id={`${id}-colormap`}
          value={style.colormap}
          onChange={(e) => onStyleChange({ ...style, colormap: e.target.value as ColormapName })}
        >
          {(Object.keys(COLORMAPS) as ColormapName[]).map((name) => (
            <option key={name} value={name}>
              {name}
            </option>
          ))}
        </select>
      </div>
      <div className="field">
        <label htmlFor={`${id}-rescale`}>Value range (min,max)</label>
        <input
          id={`${id}-rescale`}
          inputMode="decimal"
          placeholder="band min,max"
          value={rescale_text}
          aria-invalid={rescale_invalid || undefined}
          aria-describedby={rescale_invalid ? `${id}-rescale-error` : undefined}
          onChange={(e) => {
            setRescaleText(e.target.value);
            const rescale = parseRescale(e.target.value);
            if (rescale || e.target.value.trim() === '') onStyleChange({ ...style, rescale });
          }}
        />
        {rescale_invalid && (
          <p className="field-error" id={`${id}-rescale-error`}>
            two numbers, min before max
          </p>
        )}
      </div>
      <div className="field">
        <label htmlFor={`${id}-opacity`}>Opacity ({opacity_pct}%)</label>
        <input
          id={`${id}-opacity`}
          type="range"
          min={0}
          max={100}
          value={opacity_pct}
          onChange={(e) => onOpacityChange(Number(e.target.value))}
        />
      </div>
    </fieldset>
  );
}
