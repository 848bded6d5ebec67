const UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

/**
 * Reads a duration: `90s`, `10m`, `2h`, `35d`, `2w`, `500ms`, a plain `0`,
 * or an ISO-8601 duration such as `PT5M`, `PT0S` or `P1D` (no months or years:
 * they have no fixed length). Returns milliseconds, or throws with a reason.
 */
export function parseDuration(text: string): number {
  const s = text.trim();
  if (s === '0') return 0;

  const simple = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$/.exec(s);
  if (simple !== null)
    return Math.round(Number(simple[1]) * (UNITS[simple[2] as string] as number));

  const iso = /^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$/.exec(s);
  if (iso !== null && s !== 'P' && !s.endsWith('T')) {
    const [, w, d, h, m, sec] = iso;
    return Math.round(
      Number(w ?? 0) * UNITS.w! +
        Number(d ?? 0) * UNITS.d! +
        Number(h ?? 0) * UNITS.h! +
        Number(m ?? 0) * UNITS.m! +
        Number(sec ?? 0) * 1000,
    );
  }

  throw new Error(`not a duration: '${text}' (write it like 90s, 10m, 2h, 35d or PT5M)`);
}

/** Reads a byte size: `512MB`, `2GB`, `1GiB`, `65536`. */
export function parseByteSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?$/i.exec(text.trim());
  if (m === null) throw new Error(`not a size: '${text}' (write it like 512MB or 2GiB)`);

  const unit = (m[2] ?? 'B').toLowerCase();
  const factor: Record<string, number> = {
    b: 1,
    kb: 1e3,
    kib: 1024,
    mb: 1e6,
    mib: 1024 ** 2,
    gb: 1e9,
    gib: 1024 ** 3,
  };

  return Math.round(Number(m[1]) * (factor[unit] as number));
}

/** A duration as short text, e.g. `10m`, for logs and help. */
export function formatDuration(ms: number): string {
  for (const [unit, size] of [
    ['d', UNITS.d!],
    ['h', UNITS.h!],
    ['m', UNITS.m!],
    ['s', UNITS.s!],
  ] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }

  return `${ms}ms`;
}
