// Tests that every text colour pair in the palette meets WCAG AA contrast (4.5:1).
import { describe, expect, it } from 'vitest';
import { COLORS, contrastRatio, TEXT_PAIRS } from './theme';

describe('theme contrast', () => {
  it('computes known ratios', () => {
    expect(contrastRatio('#000000', '#ffffff')).toBeCloseTo(21, 5);
    expect(contrastRatio('#ffffff', '#ffffff')).toBeCloseTo(1, 5);
  });

  it.each(TEXT_PAIRS)('%s on %s reaches 4.5:1', (fg, bg) => {
    expect(contrastRatio(COLORS[fg], COLORS[bg])).toBeGreaterThanOrEqual(4.5);
  });

  it('keeps the focus ring visible (3:1) on the page background', () => {
    expect(contrastRatio(COLORS.focus, COLORS.page_bg)).toBeGreaterThanOrEqual(3);
  });
});
