// Colour palette (single source for CSS custom properties and map styles) with WCAG contrast helpers.
import type { TaskState } from './api/types';

export const COLORS = {
  page_bg: '#ffffff',
  surface_bg: '#f4f6f8',
  text: '#1b1f24',
  text_muted: '#545d68',
  border: '#8c959f',
  link: '#0b5cad',
  primary_bg: '#0b5cad',
  primary_text: '#ffffff',
  danger_bg: '#b3261e',
  danger_text: '#ffffff',
  error_text: '#a1221b',
  error_bg: '#fdecea',
  header_bg: '#14213d',
  header_text: '#ffffff',
  focus: '#c75300',
  map_ocean: '#d7e6f2',
  map_land: '#eef0ea',
  map_border: '#9aa39a',
} as const;

/** Tile/task state colours: map fills, legend swatches and badge dots (always shown beside the state's name). */
export const STATE_COLORS: Record<TaskState, string> = {
  blocked: '#8e6fbf',
  queued: '#8c959f',
  running: '#1f77d0',
  succeeded: '#1a7f37',
  failed: '#cf222e',
  cancelled: '#3d444d',
};

/** Text/background pairs the stylesheet uses; each must reach 4.5:1. */
export const TEXT_PAIRS: [keyof typeof COLORS, keyof typeof COLORS][] = [
  ['text', 'page_bg'],
  ['text', 'surface_bg'],
  ['text_muted', 'page_bg'],
  ['text_muted', 'surface_bg'],
  ['link', 'page_bg'],
  ['link', 'surface_bg'],
  ['primary_text', 'primary_bg'],
  ['danger_text', 'danger_bg'],
  ['error_text', 'page_bg'],
  ['error_text', 'error_bg'],
  ['error_text', 'surface_bg'],
  ['header_text', 'header_bg'],
];

function channel(value: number): number {
  const c = value / 255;
  return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
}

export function relativeLuminance(hex: string): number {
  const n = Number.parseInt(hex.slice(1), 16);
  return 0.2126 * channel((n >> 16) & 255) + 0.7152 * channel((n >> 8) & 255) + 0.0722 * channel(n & 255);
}

export function contrastRatio(a: string, b: string): number {
  const [hi, lo] = [relativeLuminance(a), relativeLuminance(b)].sort((x, y) => y - x) as [number, number];
  return (hi + 0.05) / (lo + 0.05);
}

/** Publishes the palette as CSS custom properties (--page-bg, --state-failed, …). */
export function applyTheme(root: HTMLElement): void {
  for (const [name, value] of Object.entries(COLORS)) root.style.setProperty(`--${name.replace(/_/g, '-')}`, value);
  for (const [state, value] of Object.entries(STATE_COLORS)) root.style.setProperty(`--state-${state}`, value);
}
