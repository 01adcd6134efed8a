// Pure map helpers: absolute tile URLs from TileJSON and the bounds of a footprint collection.
import type { FootprintCollection, TileJson } from '../api/types';

/** TileJSON tile templates made absolute against the page (MapLibre needs absolute URLs). */
export function absoluteTiles(tilejson: TileJson, base: string): string[] {
  return tilejson.tiles.map((template) => new URL(template, base).href.replace(/%7B/g, '{').replace(/%7D/g, '}'));
}

/** Bounds of every footprint's outer ring. */
export function footprintsBbox(collection: FootprintCollection): number[] | null {
  let [minx, miny, maxx, maxy] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const feature of collection.features) {
    for (const [x, y] of feature.geometry.coordinates[0] ?? []) {
      if (x === undefined || y === undefined) continue;
      minx = Math.min(minx, x);
      miny = Math.min(miny, y);
      maxx = Math.max(maxx, x);
      maxy = Math.max(maxy, y);
    }
  }
  return Number.isFinite(minx) ? [minx, miny, maxx, maxy] : null;
}
