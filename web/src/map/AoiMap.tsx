// AOI picker map: terra-draw rectangle drawing on MapLibre; the chosen box is drawn from the form's value.
import type { GeoJSONSource } from 'maplibre-gl';
import { useEffect, useRef, useState } from 'react';
import { TerraDraw, TerraDrawRectangleMode } from 'terra-draw';
import { TerraDrawMapLibreGLAdapter } from 'terra-draw-maplibre-gl-adapter';
import type { Polygon } from '../api/types';
import { bboxToPolygon, polygonBbox, roundBbox } from '../lib/aoi';
import type { BBox } from '../lib/filters';
import { COLORS } from '../theme';
import { useMapLibre } from './useMapLibre';

interface Props {
  value: BBox | null;
  onChange: (bbox: BBox | null) => void;
}

const NO_FEATURES = { type: 'FeatureCollection' as const, features: [] };

export function AoiMap({ value, onChange }: Props) {
  const container = useRef<HTMLDivElement>(null);
  const map = useMapLibre(container);
  const draw = useRef<TerraDraw | null>(null);
  const [drawing, setDrawing] = useState(false);
  const on_change = useRef(onChange);

  useEffect(() => {
    on_change.current = onChange;
  }, [onChange]);

  useEffect(() => {
    if (!map) return;
    map.addSource('aoi', { type: 'geojson', data: NO_FEATURES });
    map.addLayer({
      id: 'aoi-fill',
      type: 'fill',
      source: 'aoi',
      paint: { 'fill-color': COLORS.link, 'fill-opacity': 0.15 },
    });
    map.addLayer({
      id: 'aoi-line',
      type: 'line',
      source: 'aoi',
      paint: { 'line-color': COLORS.link, 'line-width': 2 },
    });
    const instance = new TerraDraw({
      adapter: new TerraDrawMapLibreGLAdapter({ map }),
      modes: [new TerraDrawRectangleMode({ drawInteraction: 'click-move-or-drag' })],
    });
    instance.start();
    instance.on('finish', (id) => {
      const feature = instance.getSnapshotFeature(id);
      const bbox = feature?.geometry.type === 'Polygon' ? polygonBbox(feature.geometry as Polygon) : null;
      if (bbox) on_change.current(roundBbox(bbox));
      // Leave terra-draw's own event handling before clearing its store; the box is drawn from `value`.
      setTimeout(() => {
        if (!instance.enabled) return;
        instance.clear();
        instance.setMode('static');
      }, 0);
      setDrawing(false);
    });
    draw.current = instance;
    return () => {
      draw.current = null;
      if (!map.style) return; // the map is already gone
      instance.stop();
      map.removeLayer('aoi-line');
      map.removeLayer('aoi-fill');
      map.removeSource('aoi');
    };
  }, [map]);

  useEffect(() => {
    if (!map) return;
    const data = value ? { type: 'Feature' as const, geometry: bboxToPolygon(value), properties: {} } : NO_FEATURES;
    (map.getSource('aoi') as GeoJSONSource | undefined)?.setData(data);
  }, [map, value]);

  const toggleDrawing = () => {
    const instance = draw.current;
    if (!instance) return;
    instance.setMode(drawing ? 'static' : 'rectangle');
    setDrawing(!drawing);
  };

  return (
    <div className="aoi-map">
      <div className="toolbar">
        <button type="button" onClick={toggleDrawing} aria-pressed={drawing} disabled={!map}>
          {drawing ? 'Stop drawing' : 'Draw rectangle on map'}
        </button>
        <button type="button" onClick={() => onChange(null)} disabled={!value}>
          Clear area
        </button>
      </div>
      <div ref={container} className="map map-small" role="region" aria-label="area of interest map" />
      <p className="hint" id="aoi-hint">
        Drag (or click two corners) on the map, or type the bounds below.
      </p>
    </div>
  );
}
