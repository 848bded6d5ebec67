import { isoSeconds } from '../periods/index.js';
import type { CurrentRow, DeadLetterSummary, FilingView, VersionRow } from '../sink/types.js';

export type OutputFormat = 'table' | 'csv' | 'json';

type Cell = string | number | null;

/** CSV columns of `query`. */
export const CURRENT_COLUMNS = [
  'period_type',
  'period_start',
  'distinct_users',
  'version',
  'status',
] as const;

/** CSV columns of `query --history`. */
export const HISTORY_COLUMNS = [
  'period_type',
  'period_start',
  'version',
  'distinct_users',
  'status',
  'reason',
  'written_at',
] as const;

export const FILING_COLUMNS = [
  'filing_id',
  'period_type',
  'period_start',
  'filed_version',
  'filed_users',
  'current_version',
  'current_users',
  'current_status',
  'difference',
  'filed_by',
  'filed_at',
  'note',
] as const;

export function formatCurrent(rows: readonly CurrentRow[], format: OutputFormat): string {
  const records = rows.map((r) => ({
    period_type: r.periodType,
    period_start: isoSeconds(r.periodStartMs),
    distinct_users: r.distinctUsers,
    version: r.version,
    status: r.status,
  }));

  return render(CURRENT_COLUMNS, records, format);
}

export function formatHistory(rows: readonly VersionRow[], format: OutputFormat): string {
  const records = rows.map((r) => ({
    period_type: r.periodType,
    period_start: isoSeconds(r.periodStartMs),
    version: r.version,
    distinct_users: r.distinctUsers,
    status: r.status,
    reason: r.reason,
    written_at: new Date(r.writtenAtMs).toISOString(),
  }));

  return render(HISTORY_COLUMNS, records, format);
}

export function formatFilings(rows: readonly FilingView[], format: OutputFormat): string {
  const records = rows.map((f) => ({
    filing_id: f.filingId,
    period_type: f.periodType,
    period_start: isoSeconds(f.periodStartMs),
    filed_version: f.version,
    filed_users: f.distinctUsers,
    current_version: f.currentVersion,
    current_users: f.currentDistinctUsers,
    current_status: f.currentStatus,
    difference: f.difference,
    filed_by: f.filedBy,
    filed_at: new Date(f.filedAtMs).toISOString(),
    note: f.note,
  }));

  return render(FILING_COLUMNS, records, format);
}

export function formatRejects(summary: DeadLetterSummary, format: OutputFormat): string {
  if (format === 'json') return `${JSON.stringify(summary, null, 2)}\n`;

  const records: Record<string, Cell>[] = [];
  for (const [reason, count] of Object.entries(summary.counts)) {
    const examples = summary.examples[reason as keyof typeof summary.examples] ?? [];
    if (examples.length === 0) {
      records.push({ reason, count, source: null, line: null, detail: null, raw: null });
    }
    for (const e of examples) {
      const raw = format === 'table' ? e.raw.slice(0, 120) : e.raw;
      records.push({ reason, count, source: e.source, line: e.line, detail: e.detail, raw });
    }
  }

  return render(['reason', 'count', 'source', 'line', 'detail', 'raw'], records, format);
}

function render(
  columns: readonly string[],
  records: readonly Record<string, Cell>[],
  format: OutputFormat,
): string {
  if (format === 'json') return `${JSON.stringify(records, null, 2)}\n`;
  if (format === 'csv') {
    const lines = [
      columns.join(','),
      ...records.map((r) => columns.map((c) => csvCell(r[c] ?? null)).join(',')),
    ];
    return `${lines.join('\n')}\n`;
  }

  return table(columns, records);
}

function csvCell(value: Cell): string {
  if (value === null) return '';
  const s = String(value);

  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function table(columns: readonly string[], records: readonly Record<string, Cell>[]): string {
  if (records.length === 0) return '(no rows)\n';

  const cells = records.map((r) =>
    columns.map((c) => (r[c] === null || r[c] === undefined ? '' : String(r[c]))),
  );
  const widths = columns.map((c, i) =>
    Math.max(c.length, ...cells.map((row) => (row[i] as string).length)),
  );
  const line = (row: readonly string[]): string =>
    row
      .map((cell, i) =>
        typeof records[0]?.[columns[i] as string] === 'number'
          ? cell.padStart(widths[i] as number)
          : cell.padEnd(widths[i] as number),
      )
      .join('  ')
      .trimEnd();

  return `${[line(columns), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)].join('\n')}\n`;
}
