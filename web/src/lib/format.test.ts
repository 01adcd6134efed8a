// Tests for display formatting helpers.
import { describe, expect, it } from 'vitest';
import { ageSecs, formatAge, formatBytes, formatTimestamp, isoToLocalInput, localInputToIso, percent } from './format';

describe('format', () => {
  it('formats bytes with binary units', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1023)).toBe('1023 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(80 * 1024 ** 3)).toBe('80.0 GiB');
    expect(formatBytes(141 * 1024 ** 3)).toBe('141 GiB');
    expect(formatBytes(-1)).toBe('–');
  });

  it('formats ages by their largest whole unit', () => {
    expect(formatAge(0)).toBe('0 s');
    expect(formatAge(59.9)).toBe('59 s');
    expect(formatAge(60)).toBe('1 min');
    expect(formatAge(3599)).toBe('59 min');
    expect(formatAge(7200)).toBe('2 h');
    expect(formatAge(3 * 86_400)).toBe('3 d');
    expect(formatAge(-5)).toBe('0 s');
    expect(formatAge(Number.NaN)).toBe('–');
    expect(ageSecs('2026-01-01T00:00:00Z', Date.parse('2026-01-01T00:00:30Z'))).toBe(30);
  });

  it('formats timestamps in UTC', () => {
    expect(formatTimestamp('2026-11-27T11:18:38.123+01:00')).toBe('2026-11-27 10:18:38 UTC');
    expect(formatTimestamp(null)).toBe('–');
    expect(formatTimestamp('garbage')).toBe('–');
  });

  it('computes clamped whole percentages', () => {
    expect(percent(1, 3)).toBe(33);
    expect(percent(3, 3)).toBe(100);
    expect(percent(5, 3)).toBe(100);
    expect(percent(1, 0)).toBe(0);
  });

  it('converts datetime-local values to ISO and back in the local time zone', () => {
    const iso = localInputToIso('2026-05-06T07:08');
    expect(iso).toMatch(/^2026-05-0\dT\d\d:\d\d:00\.000Z$/);
    expect(isoToLocalInput(iso)).toBe('2026-05-06T07:08');
    expect(localInputToIso('')).toBe('');
    expect(isoToLocalInput('')).toBe('');
  });
});
