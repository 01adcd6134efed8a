// Display formatting helpers: bytes, ages, timestamps, percentages and datetime-local conversion.

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return '–';
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const digits = unit === 0 || value >= 100 ? 0 : 1;
  return `${value.toFixed(digits)} ${BYTE_UNITS[unit]}`;
}

/** A short age such as "4 s", "12 min", "3 h", "2 d". */
export function formatAge(age_secs: number): string {
  if (!Number.isFinite(age_secs)) return '–';
  const secs = Math.max(0, Math.floor(age_secs));
  if (secs < 60) return `${secs} s`;
  if (secs < 3600) return `${Math.floor(secs / 60)} min`;
  if (secs < 86_400) return `${Math.floor(secs / 3600)} h`;
  return `${Math.floor(secs / 86_400)} d`;
}

export function ageSecs(iso: string, now_ms: number): number {
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? Number.NaN : (now_ms - ms) / 1000;
}

/** "2026-11-27 11:18:38 UTC": unambiguous, sortable, the same for every viewer. */
export function formatTimestamp(iso: string | null | undefined): string {
  if (!iso) return '–';
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) return '–';
  return `${new Date(ms).toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

/** Whole percent of done/total, clamped to 0..100; 0 when total is 0. */
export function percent(done: number, total: number): number {
  if (!(total > 0)) return 0;
  return Math.min(100, Math.max(0, Math.floor((done / total) * 100)));
}

function pad2(value: number): string {
  return String(value).padStart(2, '0');
}

/** ISO instant → value for <input type="datetime-local"> in the viewer's time zone. */
export function isoToLocalInput(iso: string): string {
  const ms = Date.parse(iso);
  if (!iso || Number.isNaN(ms)) return '';
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}T${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
}

/** <input type="datetime-local"> value (viewer's time zone) → ISO instant, '' when empty or invalid. */
export function localInputToIso(value: string): string {
  if (!value) return '';
  const ms = new Date(value).getTime();
  return Number.isNaN(ms) ? '' : new Date(ms).toISOString();
}
