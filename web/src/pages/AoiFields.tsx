// Optional area of interest: typed bounds kept in step with a rectangle drawn on the map.
import { lazy, Suspense, useState } from 'react';
import { bboxFromCorners } from '../lib/aoi';
import type { BBox } from '../lib/filters';
import { FieldMessages } from '../components/FieldMessages';

const AoiMap = lazy(() => import('../map/AoiMap').then((module) => ({ default: module.AoiMap })));

const EDGES = [
  { key: 'west', label: 'West (min lon)' },
  { key: 'south', label: 'South (min lat)' },
  { key: 'east', label: 'East (max lon)' },
  { key: 'north', label: 'North (max lat)' },
] as const;

type Texts = [string, string, string, string];

const toTexts = (bbox: BBox | null): Texts => (bbox ? (bbox.map(String) as Texts) : ['', '', '', '']);

function parseTexts(texts: Texts): BBox | null {
  if (texts.some((text) => text.trim() === '')) return null;
  const [w, s, e, n] = texts.map(Number) as BBox;
  const bbox = bboxFromCorners({ lng: w, lat: s }, { lng: e, lat: n });
  // Only boxes typed in order and inside the world count; anything else is reported, not silently fixed.
  return bbox && bbox.every((v, i) => v === [w, s, e, n][i]) ? bbox : null;
}

const sameBbox = (a: BBox | null, b: BBox | null) => a === b || (!!a && !!b && a.every((v, i) => v === b[i]));

interface Props {
  value: BBox | null;
  onChange: (bbox: BBox | null) => void;
  messages: string[];
}

export function AoiFields({ value, onChange, messages }: Props) {
  const [texts, setTexts] = useState<Texts>(toTexts(value));
  const [shown, setShown] = useState<BBox | null>(value);
  if (value !== shown) {
    setShown(value);
    if (!sameBbox(parseTexts(texts), value)) setTexts(toTexts(value));
  }
  const empty = texts.every((text) => text.trim() === '');
  const invalid = !empty && parseTexts(texts) === null;
  const problem = texts.some((text) => text.trim() === '')
    ? 'fill in all four bounds, or none'
    : 'bounds must be numbers in degrees, west < east and south < north';

  const edit = (index: number, text: string) => {
    const next = texts.map((t, i) => (i === index ? text : t)) as Texts;
    setTexts(next);
    // Incomplete or invalid bounds mean no AOI (and a message) rather than a stale one.
    const bbox = parseTexts(next);
    setShown(bbox);
    onChange(bbox);
  };

  return (
    <fieldset>
      <legend>Area of interest (optional)</legend>
      <Suspense fallback={<div className="map map-small">Loading map…</div>}>
        <AoiMap value={value} onChange={onChange} />
      </Suspense>
      <div className="row">
        {EDGES.map((edge, i) => (
          <div className="field narrow" key={edge.key}>
            <label htmlFor={`aoi-${edge.key}`}>{edge.label}</label>
            <input
              id={`aoi-${edge.key}`}
              inputMode="decimal"
              value={texts[i]}
              aria-invalid={invalid || undefined}
              aria-describedby={invalid || messages.length > 0 ? 'aoi-error' : 'aoi-hint'}
              onChange={(e) => edit(i, e.target.value)}
            />
          </div>
        ))}
      </div>
      <FieldMessages id="aoi" messages={[...(invalid ? [problem] : []), ...messages]} />
    </fieldset>
  );
}
