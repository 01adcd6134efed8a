// Tests for output-layer styling helpers.
import { describe, expect, it } from 'vitest';
import { colormapGradient, DEFAULT_OUTPUT_STYLE, parseRescale, stacBandRange, tileQuery } from './outputStyle';

describe('output style', () => {
  it('asks for nothing special by default and carries colormap and rescale otherwise', () => {
    expect(tileQuery(DEFAULT_OUTPUT_STYLE)).toEqual({});
    expect(tileQuery({ colormap: 'rdylgn', rescale: [-0.2, 0.9] })).toEqual({
      colormap: 'rdylgn',
      rescale: '-0.2,0.9',
    });
  });

  it('parses a rescale range only when it is two increasing numbers', () => {
    expect(parseRescale(' -0.2 , 0.9 ')).toEqual([-0.2, 0.9]);
    expect(parseRescale('0.9,-0.2')).toBeNull();
    expect(parseRescale('1')).toBeNull();
    expect(parseRescale('a,b')).toBeNull();
    expect(parseRescale('')).toBeNull();
  });

  it('draws the gradient from low to high', () => {
    expect(colormapGradient('greys')).toBe('linear-gradient(to right, #000000, #ffffff)');
  });

  it('reads the band range from a STAC item', () => {
    const item = {
      assets: {
        data: {
          'raster:bands': [
            { statistics: { minimum: -0.31, maximum: 0.88 } },
            { statistics: { minimum: 0, maximum: 1 } },
          ],
        },
      },
    };
    expect(stacBandRange(item)).toEqual([-0.31, 0.88]);
    expect(stacBandRange(item, 2)).toEqual([0, 1]);
    expect(stacBandRange(item, 3)).toBeNull();
    expect(stacBandRange({ assets: { data: {} } })).toBeNull();
    expect(stacBandRange(null)).toBeNull();
  });
});
