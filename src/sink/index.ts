export {
  InvalidFilingError,
  MAX_FILED_BY_BYTES,
  MAX_NOTE_BYTES,
  NotPublishedError,
  StaleFenceError,
  filingTextProblem,
} from './errors.js';
export type { NotPublishedWhy } from './errors.js';
export { MIGRATIONS, applyMigrations } from './migrations.js';
export type { Migration } from './migrations.js';
export { PGLITE_MEMORY, PgliteClient, PostgresClient } from './sql-client.js';
export type { PostgresClientOptions, SqlClient, SqlClientKind } from './sql-client.js';
export { Warehouse } from './warehouse.js';
export type { FileCurrentArgs, PublishBatch, WarehouseOptions } from './warehouse.js';
export type {
  CurrentRow,
  DeadLetterSummary,
  DeadLetterWrite,
  FilingRow,
  FilingView,
  PeriodRange,
  PeriodStatus,
  ProvisionalWrite,
  PublishedState,
  VersionRow,
  VersionWrite,
  WriterFence,
} from './types.js';
