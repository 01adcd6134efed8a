// Tests for pure map helpers.
import { describe, expect, it } from 'vitest';
import { absoluteTiles, footprintsBbox } from './geometry';

describe('map geometry', () => {
  it('makes relative tile templates absolute and keeps the {z}/{x}/{y} placeholders', () => {
    const tiles = absoluteTiles(
      { tilejson: '3.0.0', tiles: ['/v1/jobs/j1/tiles/{z}/{x}/{y}.png'], minzoom: 0, maxzoom: 12 },
      'http://host:8080/#/jobs/j1',
    );
    expect(tiles).toEqual(['http://host:8080/v1/jobs/j1/tiles/{z}/{x}/{y}.png']);
  });

  it('bounds all footprints', () => {
    const square = (x: number, y: number, i: number) => ({
      type: 'Feature' as const,
      id: i,
      geometry: {
        type: 'Polygon' as const,
        coordinates: [
          [
            [x, y],
            [x + 1, y],
            [x + 1, y + 1],
            [x, y + 1],
            [x, y],
          ],
        ],
      },
      properties: { tile_index: i, state: 'queued' as const },
    });
    expect(footprintsBbox({ type: 'FeatureCollection', features: [square(0, 0, 0), square(3, -2, 1)] })).toEqual([
      0, -2, 4, 1,
    ]);
    expect(footprintsBbox({ type: 'FeatureCollection', features: [] })).toBeNull();
  });
});
