/**
 * The wire contracts of `proto/speedlayer/v1`, loaded for gRPC, with the
 * TypeScript shape of each message as it travels and converters between
 * those messages and the domain types of the other folders.
 *
 * How messages look in TypeScript is fixed by {@link WIRE_CONVERSION_OPTIONS}
 * and must be the same on both ends of a call:
 *
 * - `keepCase`: field names stay snake_case, as in the proto files. Without
 *   it proto-loader camelCases them and silently drops every snake_case field
 *   a sender writes.
 * - `longs: Number`: every int64 is a JS number. The int64 fields hold epoch
 *   milliseconds, user and event counts, ring epochs, fencing tokens (etcd
 *   revisions) and ids, which all stay far below 2^53, and the domain types
 *   already hold them as numbers; strings would add a parse at every
 *   boundary. A value beyond 2^53 would lose its low digits silently: only
 *   nonsense event times (nanoseconds sent as milliseconds) get there, and
 *   those are rejected as `future` whatever their last digits.
 * - `enums: String`: enum values are their names, e.g. `PERIOD_TYPE_DAY`.
 * - `defaults: true`: a decoded message has every field; an absent sub-message
 *   is `null`, and an absent `optional` scalar is left out.
 * - `oneofs: true`: a present `optional` scalar also sets a virtual
 *   `_<field>` property naming it, which the converters ignore.
 *
 * An unknown watermark (a partition that has received no mark yet) is
 * `-Infinity` in the domain and an absent `optional` field on the wire: int64
 * has no infinity.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';

import type { PartitionAck } from '../coordinator/coordinator.js';
import type { RejectReason } from '../ingest/types.js';
import { parsePeriodKey, periodKey, type Period, type PeriodType } from '../periods/index.js';
import type { PartitionChunk } from '../shard/partition-copy.js';
import type { PartitionBatch, PartitionReport, PeriodChange } from '../shard/types.js';
import type {
  CurrentRow,
  DeadLetterSummary,
  DeadLetterWrite,
  FilingRow,
  FilingView,
  PeriodRange,
  PeriodStatus,
  VersionRow,
} from '../sink/index.js';

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

/** The repository's `proto/` folder: the include root of every proto file. */
export const PROTO_DIR = fileURLToPath(new URL('../../proto/', import.meta.url));

/** Every proto file of the contracts, relative to {@link PROTO_DIR}. */
export const PROTO_FILES: readonly string[] = [
  'speedlayer/v1/common.proto',
  'speedlayer/v1/ingest.proto',
  'speedlayer/v1/shard.proto',
  'speedlayer/v1/coordinator.proto',
  'speedlayer/v1/query.proto',
];

/** The proto package of the contracts. */
export const PROTO_PACKAGE = 'speedlayer.v1';

/** How decoded messages look in TypeScript (see the top of this file). */
export const WIRE_CONVERSION_OPTIONS = {
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
} as const;

/** The options both ends of every call load the contracts with. */
export const PROTO_LOADER_OPTIONS: protoLoader.Options = {
  ...WIRE_CONVERSION_OPTIONS,
  keepCase: true,
  includeDirs: [PROTO_DIR],
};

/** A service of the contracts: its client class and its definition for a server. */
export interface SpeedlayerService<Client, Handlers> {
  /** Fully qualified name, e.g. `speedlayer.v1.Query`. */
  readonly name: string;
  /** The client class: `new service.Client(address, credentials)`. */
  readonly Client: SpeedlayerClientConstructor<Client>;
  /** What `server.addService` takes, keyed by method name. */
  readonly definition: grpc.ServiceDefinition<Handlers>;
}

/** A typed grpc-js client class. */
export interface SpeedlayerClientConstructor<Client> {
  new (address: string, credentials: grpc.ChannelCredentials, options?: grpc.ClientOptions): Client;
  readonly service: grpc.ServiceDefinition;
  readonly serviceName: string;
}

/** The loaded contracts. */
export interface SpeedlayerProtos {
  readonly packageDefinition: protoLoader.PackageDefinition;
  readonly grpcObject: grpc.GrpcObject;
  readonly ingest: SpeedlayerService<IngestClient, IngestHandlers>;
  readonly shard: SpeedlayerService<ShardClient, ShardHandlers>;
  readonly coordinator: SpeedlayerService<CoordinatorClient, CoordinatorHandlers>;
  readonly query: SpeedlayerService<QueryClient, QueryHandlers>;
}

let loaded: SpeedlayerProtos | undefined;

/**
 * Loads the contracts with proto-loader for grpc-js. They are read once per
 * process; later calls return the same object.
 */
export function loadSpeedlayerProtos(): SpeedlayerProtos {
  if (loaded !== undefined) return loaded;

  const packageDefinition = protoLoader.loadSync([...PROTO_FILES], PROTO_LOADER_OPTIONS);
  const grpcObject = grpc.loadPackageDefinition(packageDefinition);
  loaded = {
    packageDefinition,
    grpcObject,
    ingest: serviceOf(grpcObject, 'Ingest'),
    shard: serviceOf(grpcObject, 'Shard'),
    coordinator: serviceOf(grpcObject, 'Coordinator'),
    query: serviceOf(grpcObject, 'Query'),
  };

  return loaded;
}

/**
 * Loads the contracts as a protobufjs reflection root, with snake_case field
 * names as on the wire: for encoding and decoding messages outside a gRPC
 * call (tests, in-process checks). Decode with
 * `type.toObject(message, WIRE_CONVERSION_OPTIONS)` to get what gRPC gets.
 */
export function loadSpeedlayerRoot(): protobuf.Root {
  const root = new protobuf.Root();
  // Imports name files from the include root, not from the importing file's folder.
  root.resolvePath = (_origin, target) =>
    path.isAbsolute(target) ? target : path.join(PROTO_DIR, target);
  root.loadSync(
    PROTO_FILES.map((file) => path.join(PROTO_DIR, file)),
    { keepCase: true },
  );
  root.resolveAll();

  return root;
}

/** Registers a service's handlers on a server, checked against the service's types. */
export function addSpeedlayerService<Handlers extends grpc.UntypedServiceImplementation>(
  server: grpc.Server,
  service: SpeedlayerService<unknown, Handlers>,
  handlers: Handlers,
): void {
  server.addService(service.definition, handlers);
}

function serviceOf<Client, Handlers>(
  grpcObject: grpc.GrpcObject,
  name: string,
): SpeedlayerService<Client, Handlers> {
  let node: unknown = grpcObject;
  for (const part of [...PROTO_PACKAGE.split('.'), name]) {
    node = (node as Record<string, unknown> | undefined)?.[part];
  }
  if (typeof node !== 'function' || !('service' in node)) {
    throw new Error(`[SL-WIRE-002] service ${PROTO_PACKAGE}.${name} is missing from ${PROTO_DIR}`);
  }

  const Client = node as unknown as SpeedlayerClientConstructor<Client>;

  return {
    name: `${PROTO_PACKAGE}.${name}`,
    Client,
    definition: Client.service as grpc.ServiceDefinition<Handlers>,
  };
}

// ---------------------------------------------------------------------------
// Wire messages: each interface is one message as proto-loader decodes it
// ---------------------------------------------------------------------------

export type PeriodTypeWire =
  | 'PERIOD_TYPE_UNSPECIFIED'
  | 'PERIOD_TYPE_HOUR'
  | 'PERIOD_TYPE_DAY'
  | 'PERIOD_TYPE_WEEK';

export type PeriodStatusWire =
  | 'PERIOD_STATUS_UNSPECIFIED'
  | 'PERIOD_STATUS_PROVISIONAL'
  | 'PERIOD_STATUS_FINAL'
  | 'PERIOD_STATUS_RESTATED';

export type RejectReasonWire =
  | 'REJECT_REASON_UNSPECIFIED'
  | 'REJECT_REASON_INVALID_USER_ID'
  | 'REJECT_REASON_INVALID_TIME'
  | 'REJECT_REASON_MALFORMED'
  | 'REJECT_REASON_FUTURE'
  | 'REJECT_REASON_TOO_OLD';

// common.proto

export interface PeriodWire {
  readonly type: PeriodTypeWire;
  readonly start_ms: number;
}

export interface PeriodRangeWire {
  readonly period_type: PeriodTypeWire;
  readonly from_ms?: number;
  readonly to_ms?: number;
}

export interface ErrorDetailWire {
  readonly code: string;
  readonly message: string;
  readonly retryable: boolean;
  readonly ring_epoch: number;
  readonly owner_hint: string;
  readonly partition?: number;
}

// ingest.proto

export interface EventWire {
  readonly user_id: string;
  readonly event_time_ms?: number;
  readonly received_time_ms?: number;
  readonly event_id: string;
  readonly attributes: Readonly<Record<string, string>>;
  readonly line: number;
}

export interface UnreadableRecordWire {
  readonly line: number;
  readonly reason: RejectReasonWire;
  readonly detail: string;
  readonly raw: string;
}

export interface EventBatchRequestWire {
  readonly batch_id: string;
  readonly source: string;
  readonly events: readonly EventWire[];
  readonly unreadable: readonly UnreadableRecordWire[];
  readonly clock_ms?: number;
}

export type FinishRequestWire = Record<string, never>;

export interface FinishResponseWire {
  readonly watermark_ms?: number;
}

export interface RejectionWire {
  readonly index: number;
  readonly reason: RejectReasonWire;
  readonly detail: string;
}

export interface IngestAckWire {
  readonly batch_id: string;
  readonly accepted: number;
  readonly rejected: readonly RejectionWire[];
}

// shard.proto

export interface WatermarkMarkWire {
  readonly before: number;
  readonly watermark_ms: number;
}

export interface PartitionBatchWire {
  readonly partition: number;
  readonly user_ids: readonly string[];
  readonly slot_hashes: readonly number[];
  readonly event_time_ms: readonly number[];
  readonly marks: readonly WatermarkMarkWire[];
}

export interface RouteRequestWire {
  readonly ring_epoch: number;
  readonly sender_id: string;
  readonly sequence: number;
  readonly batch: PartitionBatchWire | null;
}

export interface RouteAckWire {
  readonly partition: number;
  readonly sequence: number;
  readonly duplicate: boolean;
  readonly watermark_ms?: number;
}

export interface PeriodCountWire {
  readonly period: PeriodWire | null;
  readonly count: number;
}

export interface PeriodChangeWire {
  readonly period: PeriodWire | null;
  readonly late_events: number;
  readonly new_users: number;
}

export interface PartitionReportWire {
  readonly partition: number;
  readonly watermark_ms?: number;
  readonly seals: readonly PeriodCountWire[];
  readonly changes: readonly PeriodChangeWire[];
  readonly open_periods: readonly PeriodWire[];
}

export interface ReportRequestWire {
  readonly ring_epoch: number;
  readonly partitions: readonly number[];
}

export interface ReportResponseWire {
  readonly ring_epoch: number;
  readonly reports: readonly PartitionReportWire[];
}

export interface CountsRequestWire {
  readonly ring_epoch: number;
  readonly periods: readonly PeriodWire[];
  readonly partitions: readonly number[];
}

export interface PartitionCountsWire {
  readonly partition: number;
  readonly counts: readonly PeriodCountWire[];
}

export interface CountsResponseWire {
  readonly ring_epoch: number;
  readonly partitions: readonly PartitionCountsWire[];
}

export interface PartitionAckWire {
  readonly partition: number;
  readonly seals: readonly PeriodWire[];
  readonly changes: readonly PeriodChangeWire[];
}

export interface AckRequestWire {
  readonly ring_epoch: number;
  readonly fencing_token: number;
  readonly round: number;
  readonly acks: readonly PartitionAckWire[];
}

export type AckResponseWire = Record<string, never>;

export interface CheckpointRequestWire {
  readonly ring_epoch: number;
}

export interface CheckpointResponseWire {
  readonly ring_epoch: number;
  readonly partitions: readonly number[];
}

export interface AdoptRequestWire {
  readonly ring_epoch: number;
  readonly partition: number;
  readonly from: string;
  readonly to: string;
}

export interface AdoptResponseWire {
  readonly partition: number;
  readonly entries: number;
  readonly bytes: number;
}

export interface ReleaseRequestWire {
  readonly ring_epoch: number;
  readonly partition: number;
  readonly new_owner: string;
}

export interface PartitionEntryWire {
  readonly key: string;
  readonly value: Uint8Array;
}

export interface PartitionChunkWire {
  readonly partition: number;
  readonly entries: readonly PartitionEntryWire[];
  readonly last: boolean;
  readonly total_entries: number;
  readonly total_bytes: number;
}

// coordinator.proto

export type StatusRequestWire = Record<string, never>;

export interface PartitionStatusWire {
  readonly partition: number;
  readonly shard_id: string;
  readonly reported: boolean;
  readonly watermark_ms?: number;
}

export interface StatusResponseWire {
  readonly answered_by: string;
  readonly leader_id: string;
  readonly fencing_token: number;
  readonly ring_epoch: number;
  readonly partition_count: number;
  readonly global_watermark_ms?: number;
  readonly missing_partitions: readonly number[];
  readonly partitions: readonly PartitionStatusWire[];
  readonly last_round_at_ms?: number;
}

// query.proto

export interface CurrentRowWire {
  readonly period: PeriodWire | null;
  readonly distinct_users: number;
  readonly version: number;
  readonly status: PeriodStatusWire;
  readonly computed_at_ms: number;
  readonly watermark_ms: number;
}

export interface VersionRowWire {
  readonly period: PeriodWire | null;
  readonly version: number;
  readonly distinct_users: number;
  readonly status: PeriodStatusWire;
  readonly reason: string;
  readonly written_at_ms: number;
  readonly watermark_ms: number;
  readonly ring_epoch: number;
  readonly fencing_token: number;
}

export interface FilingRowWire {
  readonly filing_id: number;
  readonly period: PeriodWire | null;
  readonly version: number;
  readonly distinct_users: number;
  readonly filed_by: string;
  readonly note?: string;
  readonly filed_at_ms: number;
}

export interface FilingViewWire {
  readonly filing: FilingRowWire | null;
  readonly current_version: number;
  readonly current_distinct_users: number;
  readonly current_status: PeriodStatusWire;
  readonly difference: number;
}

export interface DeadLetterWire {
  readonly source: string;
  readonly line: number;
  readonly reason: RejectReasonWire;
  readonly detail: string;
  readonly raw: string;
}

export interface RejectSummaryWire {
  readonly reason: RejectReasonWire;
  readonly count: number;
  readonly examples: readonly DeadLetterWire[];
}

export interface CurrentRequestWire {
  readonly range: PeriodRangeWire | null;
}

export interface CurrentResponseWire {
  readonly rows: readonly CurrentRowWire[];
}

export interface HistoryRequestWire {
  readonly range: PeriodRangeWire | null;
}

export interface HistoryResponseWire {
  readonly rows: readonly VersionRowWire[];
}

export type ListFilingsRequestWire = Record<string, never>;

export interface ListFilingsResponseWire {
  readonly filings: readonly FilingViewWire[];
}

export interface CreateFilingRequestWire {
  readonly period: PeriodWire | null;
  readonly filed_by: string;
  readonly note?: string;
}

export interface CreateFilingResponseWire {
  readonly filing: FilingRowWire | null;
}

export interface RejectsRequestWire {
  readonly examples_per_reason: number;
}

export interface RejectsResponseWire {
  readonly reasons: readonly RejectSummaryWire[];
}

export interface WatchVersionsRequestWire {
  readonly range: PeriodRangeWire | null;
  readonly since_written_at_ms?: number;
}

// ---------------------------------------------------------------------------
// Typed clients and handlers
// ---------------------------------------------------------------------------

/** A unary method of a client. */
export interface UnaryClientMethod<Req, Res> {
  (request: Req, callback: grpc.requestCallback<Res>): grpc.ClientUnaryCall;
  (
    request: Req,
    metadata: grpc.Metadata,
    callback: grpc.requestCallback<Res>,
  ): grpc.ClientUnaryCall;
  (
    request: Req,
    metadata: grpc.Metadata,
    options: Partial<grpc.CallOptions>,
    callback: grpc.requestCallback<Res>,
  ): grpc.ClientUnaryCall;
}

/** A method of a client whose server answers with a stream. */
export type ServerStreamClientMethod<Req, Res> = (
  request: Req,
  metadata?: grpc.Metadata,
  options?: Partial<grpc.CallOptions>,
) => grpc.ClientReadableStream<Res>;

/** A method of a client that streams both ways. */
export type BidiStreamClientMethod<Req, Res> = (
  metadata?: grpc.Metadata,
  options?: Partial<grpc.CallOptions>,
) => grpc.ClientDuplexStream<Req, Res>;

export type IngestClient = grpc.Client & {
  Send: UnaryClientMethod<EventBatchRequestWire, IngestAckWire>;
  SendStream: BidiStreamClientMethod<EventBatchRequestWire, IngestAckWire>;
  Finish: UnaryClientMethod<FinishRequestWire, FinishResponseWire>;
};

export type IngestHandlers = {
  Send: grpc.handleUnaryCall<EventBatchRequestWire, IngestAckWire>;
  SendStream: grpc.handleBidiStreamingCall<EventBatchRequestWire, IngestAckWire>;
  Finish: grpc.handleUnaryCall<FinishRequestWire, FinishResponseWire>;
};

export type ShardClient = grpc.Client & {
  Route: UnaryClientMethod<RouteRequestWire, RouteAckWire>;
  Report: UnaryClientMethod<ReportRequestWire, ReportResponseWire>;
  Counts: UnaryClientMethod<CountsRequestWire, CountsResponseWire>;
  Acknowledge: UnaryClientMethod<AckRequestWire, AckResponseWire>;
  Checkpoint: UnaryClientMethod<CheckpointRequestWire, CheckpointResponseWire>;
  Adopt: UnaryClientMethod<AdoptRequestWire, AdoptResponseWire>;
  Release: ServerStreamClientMethod<ReleaseRequestWire, PartitionChunkWire>;
};

export type ShardHandlers = {
  Route: grpc.handleUnaryCall<RouteRequestWire, RouteAckWire>;
  Report: grpc.handleUnaryCall<ReportRequestWire, ReportResponseWire>;
  Counts: grpc.handleUnaryCall<CountsRequestWire, CountsResponseWire>;
  Acknowledge: grpc.handleUnaryCall<AckRequestWire, AckResponseWire>;
  Checkpoint: grpc.handleUnaryCall<CheckpointRequestWire, CheckpointResponseWire>;
  Adopt: grpc.handleUnaryCall<AdoptRequestWire, AdoptResponseWire>;
  Release: grpc.handleServerStreamingCall<ReleaseRequestWire, PartitionChunkWire>;
};

export type CoordinatorClient = grpc.Client & {
  Status: UnaryClientMethod<StatusRequestWire, StatusResponseWire>;
};

export type CoordinatorHandlers = {
  Status: grpc.handleUnaryCall<StatusRequestWire, StatusResponseWire>;
};

export type QueryClient = grpc.Client & {
  Current: UnaryClientMethod<CurrentRequestWire, CurrentResponseWire>;
  History: UnaryClientMethod<HistoryRequestWire, HistoryResponseWire>;
  ListFilings: UnaryClientMethod<ListFilingsRequestWire, ListFilingsResponseWire>;
  CreateFiling: UnaryClientMethod<CreateFilingRequestWire, CreateFilingResponseWire>;
  Rejects: UnaryClientMethod<RejectsRequestWire, RejectsResponseWire>;
  WatchVersions: ServerStreamClientMethod<WatchVersionsRequestWire, VersionRowWire>;
};

export type QueryHandlers = {
  Current: grpc.handleUnaryCall<CurrentRequestWire, CurrentResponseWire>;
  History: grpc.handleUnaryCall<HistoryRequestWire, HistoryResponseWire>;
  ListFilings: grpc.handleUnaryCall<ListFilingsRequestWire, ListFilingsResponseWire>;
  CreateFiling: grpc.handleUnaryCall<CreateFilingRequestWire, CreateFilingResponseWire>;
  Rejects: grpc.handleUnaryCall<RejectsRequestWire, RejectsResponseWire>;
  WatchVersions: grpc.handleServerStreamingCall<WatchVersionsRequestWire, VersionRowWire>;
};

// ---------------------------------------------------------------------------
// Converters between domain types and wire messages
// ---------------------------------------------------------------------------

/**
 * A wire message that decodes but breaks its contract: a required period
 * missing, an unspecified enum, columns of different lengths. A server
 * answers it with INVALID_ARGUMENT; retrying the same message cannot help.
 */
export class WireFormatError extends Error {
  readonly code = 'SL-WIRE-001';

  constructor(message: string) {
    super(`[SL-WIRE-001] ${message}`);
    this.name = 'WireFormatError';
  }
}

const PERIOD_TYPE_TO_WIRE: Readonly<Record<PeriodType, PeriodTypeWire>> = {
  hour: 'PERIOD_TYPE_HOUR',
  day: 'PERIOD_TYPE_DAY',
  week: 'PERIOD_TYPE_WEEK',
};

const PERIOD_STATUS_TO_WIRE: Readonly<Record<PeriodStatus, PeriodStatusWire>> = {
  provisional: 'PERIOD_STATUS_PROVISIONAL',
  final: 'PERIOD_STATUS_FINAL',
  restated: 'PERIOD_STATUS_RESTATED',
};

const REJECT_REASON_TO_WIRE: Readonly<Record<RejectReason, RejectReasonWire>> = {
  invalid_user_id: 'REJECT_REASON_INVALID_USER_ID',
  invalid_time: 'REJECT_REASON_INVALID_TIME',
  malformed: 'REJECT_REASON_MALFORMED',
  future: 'REJECT_REASON_FUTURE',
  too_old: 'REJECT_REASON_TOO_OLD',
};

const PERIOD_TYPE_FROM_WIRE = invert(PERIOD_TYPE_TO_WIRE);
const PERIOD_STATUS_FROM_WIRE = invert(PERIOD_STATUS_TO_WIRE);
const REJECT_REASON_FROM_WIRE = invert(REJECT_REASON_TO_WIRE);

export function periodTypeToWire(type: PeriodType): PeriodTypeWire {
  return PERIOD_TYPE_TO_WIRE[type];
}

/** @throws WireFormatError for an unspecified or unknown type. */
export function periodTypeFromWire(wire: PeriodTypeWire): PeriodType {
  return fromWireEnum(PERIOD_TYPE_FROM_WIRE, wire, 'period type');
}

export function periodStatusToWire(status: PeriodStatus): PeriodStatusWire {
  return PERIOD_STATUS_TO_WIRE[status];
}

/** @throws WireFormatError for an unspecified or unknown status. */
export function periodStatusFromWire(wire: PeriodStatusWire): PeriodStatus {
  return fromWireEnum(PERIOD_STATUS_FROM_WIRE, wire, 'period status');
}

export function rejectReasonToWire(reason: RejectReason): RejectReasonWire {
  return REJECT_REASON_TO_WIRE[reason];
}

/** @throws WireFormatError for an unspecified or unknown reason. */
export function rejectReasonFromWire(wire: RejectReasonWire): RejectReason {
  return fromWireEnum(REJECT_REASON_FROM_WIRE, wire, 'reject reason');
}

export function periodToWire(period: Period): PeriodWire {
  return { type: periodTypeToWire(period.type), start_ms: period.startMs };
}

/** @throws WireFormatError when the period is missing or its type unspecified. */
export function periodFromWire(wire: PeriodWire | null | undefined): Period {
  if (wire == null) throw new WireFormatError('a period is missing');

  return { type: periodTypeFromWire(wire.type), startMs: wire.start_ms };
}

/** A period key such as `day:1427155200000` as a Period message. */
export function periodKeyToWire(key: string): PeriodWire {
  return periodToWire(parsePeriodKey(key));
}

/** A Period message as a period key such as `day:1427155200000`. */
export function periodKeyFromWire(wire: PeriodWire | null | undefined): string {
  return periodKey(periodFromWire(wire));
}

export function periodRangeToWire(range: PeriodRange): PeriodRangeWire {
  return {
    period_type:
      range.periodType === undefined
        ? 'PERIOD_TYPE_UNSPECIFIED'
        : periodTypeToWire(range.periodType),
    ...(range.fromMs === undefined ? {} : { from_ms: range.fromMs }),
    ...(range.toMs === undefined ? {} : { to_ms: range.toMs }),
  };
}

/** An absent range, an unspecified type and absent bounds all mean "no filter". */
export function periodRangeFromWire(wire: PeriodRangeWire | null | undefined): PeriodRange {
  if (wire == null) return {};

  return {
    ...(wire.period_type === 'PERIOD_TYPE_UNSPECIFIED'
      ? {}
      : { periodType: periodTypeFromWire(wire.period_type) }),
    ...(wire.from_ms === undefined ? {} : { fromMs: wire.from_ms }),
    ...(wire.to_ms === undefined ? {} : { toMs: wire.to_ms }),
  };
}

export function partitionBatchToWire(batch: PartitionBatch): PartitionBatchWire {
  return {
    partition: batch.partition,
    user_ids: batch.userIds,
    slot_hashes: Array.from(batch.slotHashes),
    event_time_ms: Array.from(batch.eventTimeMs),
    marks: batch.marks.map((m) => ({ before: m.before, watermark_ms: m.watermarkMs })),
  };
}

/**
 * @throws WireFormatError when the batch is missing, its columns differ in
 * length, or its marks are out of order or point past the last event.
 */
export function partitionBatchFromWire(
  wire: PartitionBatchWire | null | undefined,
): PartitionBatch {
  if (wire == null) throw new WireFormatError('a partition batch is missing');

  const length = wire.user_ids.length;
  if (wire.slot_hashes.length !== length || wire.event_time_ms.length !== length) {
    throw new WireFormatError(
      `partition ${wire.partition} batch has ${length} user ids, ${wire.slot_hashes.length} slot hashes ` +
        `and ${wire.event_time_ms.length} event times`,
    );
  }
  let previous = 0;
  for (const mark of wire.marks) {
    if (mark.before < previous || mark.before > length) {
      throw new WireFormatError(
        `partition ${wire.partition} batch has a mark before ${mark.before} out of order`,
      );
    }
    previous = mark.before;
  }

  return {
    partition: wire.partition,
    length,
    userIds: wire.user_ids,
    slotHashes: Uint32Array.from(wire.slot_hashes),
    eventTimeMs: Float64Array.from(wire.event_time_ms),
    marks: wire.marks.map((m) => ({ before: m.before, watermarkMs: m.watermark_ms })),
  };
}

export function reportToWire(report: PartitionReport): PartitionReportWire {
  return {
    partition: report.partition,
    ...watermarkToWire(report.watermarkMs),
    seals: report.seals.map((s) => ({ period: periodKeyToWire(s.key), count: s.count })),
    changes: report.changes.map(periodChangeToWire),
    open_periods: report.openPeriods.map(periodKeyToWire),
  };
}

export function reportFromWire(wire: PartitionReportWire): PartitionReport {
  return {
    partition: wire.partition,
    watermarkMs: wire.watermark_ms ?? Number.NEGATIVE_INFINITY,
    seals: wire.seals.map((s) => ({ key: periodKeyFromWire(s.period), count: s.count })),
    changes: wire.changes.map(periodChangeFromWire),
    openPeriods: wire.open_periods.map(periodKeyFromWire),
  };
}

/** One partition's counts, keyed by period key, as a PartitionCounts message. */
export function partitionCountsToWire(
  partition: number,
  counts: ReadonlyMap<string, number>,
): PartitionCountsWire {
  return {
    partition,
    counts: [...counts].map(([key, count]) => ({ period: periodKeyToWire(key), count })),
  };
}

export function partitionCountsFromWire(wire: PartitionCountsWire): {
  partition: number;
  counts: Map<string, number>;
} {
  const counts = new Map<string, number>();
  for (const c of wire.counts) counts.set(periodKeyFromWire(c.period), c.count);

  return { partition: wire.partition, counts };
}

export function partitionAckToWire(ack: PartitionAck): PartitionAckWire {
  return {
    partition: ack.partition,
    seals: ack.seals.map(periodKeyToWire),
    changes: ack.changes.map(periodChangeToWire),
  };
}

export function partitionAckFromWire(wire: PartitionAckWire): PartitionAck {
  return {
    partition: wire.partition,
    seals: wire.seals.map(periodKeyFromWire),
    changes: wire.changes.map(periodChangeFromWire),
  };
}

export function partitionChunkToWire(chunk: PartitionChunk): PartitionChunkWire {
  return {
    partition: chunk.partition,
    entries: chunk.entries.map((e) => ({ key: e.key, value: e.value })),
    last: chunk.last,
    total_entries: chunk.totalEntries,
    total_bytes: chunk.totalBytes,
  };
}

export function partitionChunkFromWire(wire: PartitionChunkWire): PartitionChunk {
  return {
    partition: wire.partition,
    entries: wire.entries.map((e) => ({ key: e.key, value: e.value })),
    last: wire.last,
    totalEntries: wire.total_entries,
    totalBytes: wire.total_bytes,
  };
}

export function currentRowToWire(row: CurrentRow): CurrentRowWire {
  return {
    period: periodToWire({ type: row.periodType, startMs: row.periodStartMs }),
    distinct_users: row.distinctUsers,
    version: row.version,
    status: periodStatusToWire(row.status),
    computed_at_ms: row.computedAtMs,
    watermark_ms: row.watermarkMs,
  };
}

export function currentRowFromWire(wire: CurrentRowWire): CurrentRow {
  const period = periodFromWire(wire.period);

  return {
    periodType: period.type,
    periodStartMs: period.startMs,
    distinctUsers: wire.distinct_users,
    version: wire.version,
    status: periodStatusFromWire(wire.status),
    computedAtMs: wire.computed_at_ms,
    watermarkMs: wire.watermark_ms,
  };
}

export function versionRowToWire(row: VersionRow): VersionRowWire {
  return {
    period: periodToWire({ type: row.periodType, startMs: row.periodStartMs }),
    version: row.version,
    distinct_users: row.distinctUsers,
    status: periodStatusToWire(row.status),
    reason: row.reason,
    written_at_ms: row.writtenAtMs,
    watermark_ms: row.watermarkMs,
    ring_epoch: row.ringEpoch,
    fencing_token: row.fencingToken,
  };
}

/** @throws WireFormatError when the status is not final or restated. */
export function versionRowFromWire(wire: VersionRowWire): VersionRow {
  const period = periodFromWire(wire.period);
  const status = periodStatusFromWire(wire.status);
  if (status === 'provisional') {
    throw new WireFormatError(`version ${wire.version} of ${periodKey(period)} is provisional`);
  }

  return {
    periodType: period.type,
    periodStartMs: period.startMs,
    version: wire.version,
    distinctUsers: wire.distinct_users,
    status,
    reason: wire.reason,
    writtenAtMs: wire.written_at_ms,
    watermarkMs: wire.watermark_ms,
    ringEpoch: wire.ring_epoch,
    fencingToken: wire.fencing_token,
  };
}

export function filingRowToWire(row: FilingRow): FilingRowWire {
  return {
    filing_id: row.filingId,
    period: periodToWire({ type: row.periodType, startMs: row.periodStartMs }),
    version: row.version,
    distinct_users: row.distinctUsers,
    filed_by: row.filedBy,
    ...(row.note === null ? {} : { note: row.note }),
    filed_at_ms: row.filedAtMs,
  };
}

export function filingRowFromWire(wire: FilingRowWire | null | undefined): FilingRow {
  if (wire == null) throw new WireFormatError('a filing is missing');
  const period = periodFromWire(wire.period);

  return {
    filingId: wire.filing_id,
    periodType: period.type,
    periodStartMs: period.startMs,
    version: wire.version,
    distinctUsers: wire.distinct_users,
    filedBy: wire.filed_by,
    note: wire.note ?? null,
    filedAtMs: wire.filed_at_ms,
  };
}

export function filingViewToWire(view: FilingView): FilingViewWire {
  return {
    filing: filingRowToWire(view),
    current_version: view.currentVersion,
    current_distinct_users: view.currentDistinctUsers,
    current_status: periodStatusToWire(view.currentStatus),
    difference: view.difference,
  };
}

export function filingViewFromWire(wire: FilingViewWire): FilingView {
  return {
    ...filingRowFromWire(wire.filing),
    currentVersion: wire.current_version,
    currentDistinctUsers: wire.current_distinct_users,
    currentStatus: periodStatusFromWire(wire.current_status),
    difference: wire.difference,
  };
}

/** One RejectSummary per reason that has a count or examples, in a fixed reason order. */
export function rejectSummaryToWire(summary: DeadLetterSummary): RejectSummaryWire[] {
  const out: RejectSummaryWire[] = [];
  for (const reason of Object.keys(REJECT_REASON_TO_WIRE) as RejectReason[]) {
    const count = summary.counts[reason];
    const examples = summary.examples[reason];
    if (count === undefined && examples === undefined) continue;
    out.push({
      reason: rejectReasonToWire(reason),
      count: count ?? 0,
      examples: (examples ?? []).map((e) => ({
        source: e.source,
        line: e.line,
        reason: rejectReasonToWire(e.reason),
        detail: e.detail,
        raw: e.raw,
      })),
    });
  }

  return out;
}

export function rejectSummaryFromWire(wires: readonly RejectSummaryWire[]): DeadLetterSummary {
  const counts: Partial<Record<RejectReason, number>> = {};
  const examples: Partial<Record<RejectReason, DeadLetterWrite[]>> = {};
  for (const wire of wires) {
    const reason = rejectReasonFromWire(wire.reason);
    counts[reason] = wire.count;
    if (wire.examples.length === 0) continue;
    examples[reason] = wire.examples.map((e) => ({
      source: e.source,
      line: e.line,
      reason: rejectReasonFromWire(e.reason),
      detail: e.detail,
      raw: e.raw,
    }));
  }

  return { counts, examples };
}

function periodChangeToWire(change: PeriodChange): PeriodChangeWire {
  return {
    period: periodKeyToWire(change.key),
    late_events: change.lateEvents,
    new_users: change.newUsers,
  };
}

function periodChangeFromWire(wire: PeriodChangeWire): PeriodChange {
  return {
    key: periodKeyFromWire(wire.period),
    lateEvents: wire.late_events,
    newUsers: wire.new_users,
  };
}

/** A watermark as an optional field: left out while it is unknown (-Infinity). */
function watermarkToWire(watermarkMs: number): { watermark_ms?: number } {
  if (watermarkMs === Number.NEGATIVE_INFINITY) return {};
  if (!Number.isFinite(watermarkMs))
    throw new WireFormatError(`watermark ${watermarkMs} cannot be sent`);

  return { watermark_ms: watermarkMs };
}

function invert<K extends string, V extends string>(
  map: Readonly<Record<K, V>>,
): ReadonlyMap<string, K> {
  return new Map(Object.entries<V>(map).map(([k, v]) => [v, k as K]));
}

function fromWireEnum<T>(map: ReadonlyMap<string, T>, wire: string, what: string): T {
  const value = map.get(wire);
  if (value === undefined) throw new WireFormatError(`${what} ${String(wire)} is not allowed here`);

  return value;
}
