// Output layer styling: the server's colormaps (kernels/src/colormap.rs), tile query parameters and the STAC value range.

/** Colour stops of the tile endpoint's built-in colormaps, low value first. */
export const COLORMAPS = {
  viridis: ['#440154', '#472d7b', '#3b528b', '#2c728e', '#21918c', '#28ae80', '#5ec962', '#addc30', '#fde725'],
  rdylgn: [
    '#a50026',
    '#d73027',
    '#f46d43',
    '#fdae61',
    '#fee08b',
    '#ffffbf',
    '#d9ef8b',
    '#a6d96a',
    '#66bd63',
    '#1a9850',
    '#006837',
  ],
  greys: ['#000000', '#ffffff'],
} as const;

export type ColormapName = keyof typeof COLORMAPS;

export interface OutputStyle {
  colormap: ColormapName;
  /** [min, max] mapped to the colormap's ends; null for the band's own range. */
  rescale: [number, number] | null;
}

export const DEFAULT_OUTPUT_STYLE: OutputStyle = { colormap: 'viridis', rescale: null };

export function colormapGradient(name: ColormapName): string {
  return `linear-gradient(to right, ${COLORMAPS[name].join(', ')})`;
}

/** Query parameters for /tilejson (the server carries them into every tile URL); {} for the defaults. */
export function tileQuery(style: OutputStyle): { colormap?: string; rescale?: string } {
  return {
    ...(style.colormap !== DEFAULT_OUTPUT_STYLE.colormap ? { colormap: style.colormap } : {}),
    ...(style.rescale ? { rescale: style.rescale.join(',') } : {}),
  };
}

/** "min,max" typed by the user → a range, null when empty or not two increasing numbers. */
export function parseRescale(text: string): [number, number] | null {
  const parts = text.split(',').map((part) => part.trim());
  if (parts.length !== 2 || parts.some((part) => part === '')) return null;
  const [min, max] = parts.map(Number) as [number, number];
  return Number.isFinite(min) && Number.isFinite(max) && min < max ? [min, max] : null;
}

/** The band's minimum and maximum from a STAC Item's raster:bands statistics (band counts from 1). */
export function stacBandRange(item: unknown, band = 1): [number, number] | null {
  const assets = (item as { assets?: Record<string, { 'raster:bands'?: unknown }> } | null)?.assets;
  for (const asset of Object.values(assets ?? {})) {
    const bands = asset['raster:bands'];
    if (!Array.isArray(bands)) continue;
    const stats = (bands[band - 1] as { statistics?: { minimum?: unknown; maximum?: unknown } } | undefined)
      ?.statistics;
    if (typeof stats?.minimum === 'number' && typeof stats.maximum === 'number') return [stats.minimum, stats.maximum];
  }
  return null;
}
