export { parseCombinedLogTime, parseEventTime, parseIsoTime } from './event-time.js';
export { MAX_EVENT_MS, MIN_EVENT_MS } from './event-router.js';
export { compileFieldPath } from './field-path.js';
export {
  DEFAULT_BATCH_SIZE,
  ReadOptionsError,
  inputFormatOf,
  listEventFiles,
  readEvents,
} from './readers.js';
export type { ReadOptions } from './readers.js';
export { identifySources, planReadable, sortByReceiveTime, withSource } from './replay-input.js';
export { REJECT_REASONS } from './types.js';
export type { EventBatch, InputFormat, RecordReject, RejectReason, TimeFormat } from './types.js';
export { readUserId } from './user-id.js';
export type { UserIdResult } from './user-id.js';
