// Area of interest geometry: a dragged rectangle or typed bounds → GeoJSON Polygon (EPSG:4326).
import type { Polygon } from '../api/types';
import type { BBox } from './filters';

export interface LngLat {
  lng: number;
  lat: number;
}

const clamp = (value: number, min: number, max: number) => Math.min(max, Math.max(min, value));

/** Normalised bounds of two opposite corners, clamped to the world; null when the box has no area. */
export function bboxFromCorners(a: LngLat, b: LngLat): BBox | null {
  const values = [a.lng, a.lat, b.lng, b.lat];
  if (!values.every(Number.isFinite)) return null;
  const minx = clamp(Math.min(a.lng, b.lng), -180, 180);
  const maxx = clamp(Math.max(a.lng, b.lng), -180, 180);
  const miny = clamp(Math.min(a.lat, b.lat), -90, 90);
  const maxy = clamp(Math.max(a.lat, b.lat), -90, 90);
  if (minx === maxx || miny === maxy) return null;
  return [minx, miny, maxx, maxy];
}

/** A closed, counter-clockwise ring (RFC 7946 right-hand rule) around the box. */
export function bboxToPolygon([minx, miny, maxx, maxy]: BBox): Polygon {
  return {
    type: 'Polygon',
    coordinates: [
      [
        [minx, miny],
        [maxx, miny],
        [maxx, maxy],
        [minx, maxy],
        [minx, miny],
      ],
    ],
  };
}

export function rectangleFromCorners(a: LngLat, b: LngLat): Polygon | null {
  const bbox = bboxFromCorners(a, b);
  return bbox ? bboxToPolygon(bbox) : null;
}

/** Bounds rounded to 1e-6° (about 0.1 m): what a pointer can mean, without float noise in the form. */
export function roundBbox(bbox: BBox): BBox {
  return bbox.map((value) => Math.round(value * 1e6) / 1e6) as BBox;
}

/** Bounds of any polygon's outer ring (e.g. the one terra-draw produced); null for an empty ring. */
export function polygonBbox(polygon: Polygon): BBox | null {
  const ring = polygon.coordinates[0] ?? [];
  const lngs = ring.map((point) => point[0]).filter((v): v is number => Number.isFinite(v));
  const lats = ring.map((point) => point[1]).filter((v): v is number => Number.isFinite(v));
  if (lngs.length === 0 || lats.length === 0) return null;
  return bboxFromCorners(
    { lng: Math.min(...lngs), lat: Math.min(...lats) },
    { lng: Math.max(...lngs), lat: Math.max(...lats) },
  );
}
