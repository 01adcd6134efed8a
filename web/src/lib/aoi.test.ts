// Tests for AOI geometry: dragged rectangles and bounds → GeoJSON polygons.
import { describe, expect, it } from 'vitest';
import { bboxFromCorners, bboxToPolygon, polygonBbox, rectangleFromCorners, roundBbox } from './aoi';

function signedArea(ring: number[][]): number {
  let sum = 0;
  for (let i = 0; i < ring.length - 1; i += 1) {
    const [x1, y1] = ring[i] as [number, number];
    const [x2, y2] = ring[i + 1] as [number, number];
    sum += x1 * y2 - x2 * y1;
  }
  return sum / 2;
}

describe('aoi', () => {
  it('gives the same closed counter-clockwise polygon whichever way the rectangle was dragged', () => {
    const a = { lng: 10, lat: 40 };
    const b = { lng: 12.5, lat: 42 };
    const expected = {
      type: 'Polygon',
      coordinates: [
        [
          [10, 40],
          [12.5, 40],
          [12.5, 42],
          [10, 42],
          [10, 40],
        ],
      ],
    };
    expect(rectangleFromCorners(a, b)).toEqual(expected);
    expect(rectangleFromCorners(b, a)).toEqual(expected);
    expect(rectangleFromCorners({ lng: 10, lat: 42 }, { lng: 12.5, lat: 40 })).toEqual(expected);
    const ring = expected.coordinates[0]!;
    expect(ring[0]).toEqual(ring[ring.length - 1]);
    expect(signedArea(ring)).toBeGreaterThan(0);
  });

  it('clamps to the world and rejects empty or non-finite boxes', () => {
    expect(bboxFromCorners({ lng: -200, lat: -95 }, { lng: 10, lat: 10 })).toEqual([-180, -90, 10, 10]);
    expect(bboxFromCorners({ lng: 5, lat: 5 }, { lng: 5, lat: 9 })).toBeNull();
    expect(bboxFromCorners({ lng: Number.NaN, lat: 5 }, { lng: 6, lat: 9 })).toBeNull();
    expect(rectangleFromCorners({ lng: 1, lat: 1 }, { lng: 1, lat: 1 })).toBeNull();
  });

  it('rounds drawn bounds to micro-degrees', () => {
    expect(roundBbox([7.123456789, -45.0000004, 8.9999996, 46.5])).toEqual([7.123457, -45, 9, 46.5]);
  });

  it('recovers the bounds of a polygon (e.g. one drawn by terra-draw with extra vertices)', () => {
    expect(polygonBbox(bboxToPolygon([-3, 50, 2, 55]))).toEqual([-3, 50, 2, 55]);
    const drawn = {
      type: 'Polygon' as const,
      coordinates: [
        [
          [2, 55],
          [2, 50],
          [-3, 50],
          [-3, 55],
          [2, 55],
        ],
      ],
    };
    expect(polygonBbox(drawn)).toEqual([-3, 50, 2, 55]);
    expect(polygonBbox({ type: 'Polygon', coordinates: [] })).toBeNull();
  });
});
