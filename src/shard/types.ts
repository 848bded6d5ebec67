/** A watermark that travels in-band: it applies before the event at index `before`. */
export interface WatermarkMark {
  readonly before: number;
  readonly watermarkMs: number;
}

/**
 * Events for one partition, in arrival order, with the watermarks that
 * were interleaved with them. Every event here was accepted by the router.
 */
export interface PartitionBatch {
  readonly partition: number;
  readonly length: number;
  readonly userIds: readonly string[];
  /** Dictionary hash of each user id (see slotHashOf). */
  readonly slotHashes: Uint32Array;
  readonly eventTimeMs: Float64Array;
  readonly marks: readonly WatermarkMark[];
}

/** A partition's count of a period taken when its watermark passed the period's close point. */
export interface SealRecord {
  readonly key: string;
  readonly count: number;
}

/** Late events that reached a closed period in one partition since the last acknowledgement. */
export interface PeriodChange {
  readonly key: string;
  readonly lateEvents: number;
  readonly newUsers: number;
}

/** What a partition tells the coordinator in a round. */
export interface PartitionReport {
  readonly partition: number;
  readonly watermarkMs: number;
  /** Seal records not yet acknowledged. */
  readonly seals: readonly SealRecord[];
  /** Changes to closed periods not yet acknowledged. */
  readonly changes: readonly PeriodChange[];
  /** Keys of the open days and weeks that hold data in this partition. */
  readonly openPeriods: readonly string[];
  /**
   * The allowed lateness the partition seals with: a period is sealed once the watermark
   * passes its end plus this. Undefined when a shard did not say (older than the field).
   */
  readonly allowedLatenessMs?: number;
}

/** A write to the shard's durable store. */
export type StorageOp =
  | { readonly type: 'put'; readonly key: string; readonly value: Uint8Array }
  | { readonly type: 'del'; readonly key: string };

/** A partition's durable state as read back at start. */
export interface StoredPartition {
  readonly watermarkMs: number;
  /** Each sender's highest mark (see PartitionActor); empty in state written before them. */
  readonly senderMarks: readonly (readonly [string, number])[];
  readonly dictSegments: readonly Uint8Array[];
  readonly hourIndexes: readonly number[];
  readonly seals: readonly SealRecord[];
  readonly changes: readonly PeriodChange[];
}

/** The durable store of partition state, as the actors use it. */
export interface PartitionStorage {
  loadPartition(partition: number): Promise<StoredPartition>;
  loadHours(partition: number, hourIndexes: readonly number[]): Promise<(Uint8Array | undefined)[]>;
}
