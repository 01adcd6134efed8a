// Job map: tile footprints coloured by state (updated in place from the cache) and the output raster overlay.
import type { ExpressionSpecification, GeoJSONSource } from 'maplibre-gl';
import { useEffect, useRef } from 'react';
import type { FootprintCollection, TileJson } from '../api/types';
import { STATE_COLORS } from '../theme';
import { absoluteTiles, footprintsBbox } from './geometry';
import { fitBbox, useMapLibre } from './useMapLibre';

interface Props {
  footprints: FootprintCollection | undefined;
  bbox: number[] | null | undefined;
  output: TileJson | undefined;
  output_opacity: number;
}

const EMPTY: FootprintCollection = { type: 'FeatureCollection', features: [] };

const stateColor = [
  'match',
  ['get', 'state'],
  ...Object.entries(STATE_COLORS).flat(),
  STATE_COLORS.queued,
] as unknown as ExpressionSpecification;

export function JobMap({ footprints, bbox, output, output_opacity }: Props) {
  const container = useRef<HTMLDivElement>(null);
  const map = useMapLibre(container);
  const fitted = useRef(false);

  useEffect(() => {
    if (!map) return;
    map.addSource('footprints', { type: 'geojson', data: EMPTY });
    map.addLayer({
      id: 'footprints-fill',
      type: 'fill',
      source: 'footprints',
      paint: { 'fill-color': stateColor, 'fill-opacity': 0.45 },
    });
    map.addLayer({
      id: 'footprints-line',
      type: 'line',
      source: 'footprints',
      paint: { 'line-color': stateColor, 'line-width': 1.2 },
    });
    return () => {
      if (!map.style) return; // the map is already gone
      map.removeLayer('footprints-line');
      map.removeLayer('footprints-fill');
      map.removeSource('footprints');
    };
  }, [map]);

  useEffect(() => {
    if (!map) return;
    (map.getSource('footprints') as GeoJSONSource | undefined)?.setData(footprints ?? EMPTY);
  }, [map, footprints]);

  useEffect(() => {
    if (!map || fitted.current) return;
    const bounds = bbox ?? (footprints ? footprintsBbox(footprints) : null);
    if (bounds) {
      fitBbox(map, bounds);
      fitted.current = true;
    }
  }, [map, bbox, footprints]);

  useEffect(() => {
    if (!map || !output) return;
    map.addSource('output', {
      type: 'raster',
      tiles: absoluteTiles(output, window.location.href),
      tileSize: 256,
      minzoom: output.minzoom,
      maxzoom: output.maxzoom,
      ...(output.bounds && output.bounds.length === 4
        ? { bounds: output.bounds as [number, number, number, number] }
        : {}),
    });
    map.addLayer({ id: 'output', type: 'raster', source: 'output' }, 'footprints-fill');
    map.setPaintProperty('footprints-fill', 'fill-opacity', 0.1);
    return () => {
      // On unmount the map is already removed and has nothing left to undo.
      if (!map.style?.getLayer('output')) return;
      map.removeLayer('output');
      map.removeSource('output');
      map.setPaintProperty('footprints-fill', 'fill-opacity', 0.45);
    };
  }, [map, output]);

  useEffect(() => {
    if (map?.getLayer('output')) map.setPaintProperty('output', 'raster-opacity', output_opacity);
  }, [map, output, output_opacity]);

  return <div ref={container} className="map" role="region" aria-label="tile footprints map" />;
}
