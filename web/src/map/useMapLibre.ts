// Hook that owns one MapLibre map on a container element and hands it out once its style has loaded.
import maplibregl from 'maplibre-gl';
import 'maplibre-gl/dist/maplibre-gl.css';
import { useEffect, useState, type RefObject } from 'react';
import { basemapStyle } from './basemap';

export function useMapLibre(container: RefObject<HTMLDivElement | null>): maplibregl.Map | null {
  const [map, setMap] = useState<maplibregl.Map | null>(null);
  useEffect(() => {
    const element = container.current;
    if (!element) return;
    const instance = new maplibregl.Map({
      container: element,
      style: basemapStyle(),
      center: [0, 20],
      zoom: 0.8,
      attributionControl: { compact: true },
      renderWorldCopies: false,
    });
    instance.addControl(new maplibregl.NavigationControl({ showCompass: false }), 'top-right');
    instance.on('load', () => setMap(instance));
    return () => {
      setMap(null);
      instance.remove();
    };
  }, [container]);
  return map;
}

/** Fits the view to [minx, miny, maxx, maxy] without animation. */
export function fitBbox(map: maplibregl.Map, bbox: number[]): void {
  const [minx, miny, maxx, maxy] = bbox;
  if ([minx, miny, maxx, maxy].some((v) => v === undefined || !Number.isFinite(v))) return;
  map.fitBounds(
    [
      [minx!, miny!],
      [maxx!, maxy!],
    ],
    { padding: 24, animate: false, maxZoom: 14 },
  );
}
