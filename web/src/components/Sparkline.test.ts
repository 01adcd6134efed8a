// Tests for sparkline geometry and the GPU metric series behind it.
import { describe, expect, it } from 'vitest';
import type { GpuSample } from '../api/types';
import { series } from '../pages/WorkersPage';
import { sparklinePoints } from './Sparkline';

describe('sparklinePoints', () => {
  it('spans the width and maps min to the bottom and max to the top', () => {
    expect(sparklinePoints([0, 50, 100], 100, 10, 0, 100)).toBe('0.0,10.0 50.0,5.0 100.0,0.0');
  });

  it('clamps values outside the range and survives flat or single-value data', () => {
    expect(sparklinePoints([-20, 150], 10, 10, 0, 100)).toBe('0.0,10.0 10.0,0.0');
    expect(sparklinePoints([7, 7], 10, 10, 7, 7)).toBe('0.0,10.0 10.0,10.0');
    expect(sparklinePoints([3], 10, 10, 0, 10)).toBe('0.0,7.0');
    expect(sparklinePoints([], 10, 10, 0, 1)).toBe('');
  });
});

describe('series', () => {
  it('keeps only the samples that carry the metric', () => {
    const samples = [
      { power_w: 100 },
      { power_w: null },
      { power_w: Number.NaN },
      { power_w: 120 },
    ] as unknown as GpuSample[];
    expect(series(samples, (s) => s.power_w)).toEqual([100, 120]);
  });
});
