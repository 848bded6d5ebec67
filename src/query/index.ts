export {
  CURRENT_COLUMNS,
  FILING_COLUMNS,
  HISTORY_COLUMNS,
  formatCurrent,
  formatFilings,
  formatHistory,
  formatRejects,
} from './row-format.js';
export type { OutputFormat } from './row-format.js';
