/**
 * The wire contracts of `proto/speedlayer/v1`, loaded for gRPC, with the
 * TypeScript shape of each message as it travels and converters between
 * those messages and the domain types of the other folders.
 *
 * The message, client and handler types are generated from the proto files
 * into `src/gen/` by proto-loader's own generator (`npm run gen:proto`,
 * which `typecheck`, `lint` and `build` run first; the folder is not
 * committed), with flags taken from {@link PROTO_LOADER_OPTIONS}. Each
 * message X thus has two types that match the loader exactly, named here:
 *
 * - `XWire`: what a receiver decodes. Every field is present, int64 is a
 *   number, an enum its name, bytes a Buffer. Converters from the wire read it.
 * - `XWireInput`: what a sender may pass. Every field is optional, int64 may
 *   also be a string or Long, an enum its number, bytes any Uint8Array.
 *   Converters to the wire build it. A message that its sender builds whole
 *   and reads again (an EventBatchRequest kept until its ack) is typed
 *   `XWire`, which a sender may pass as well.
 *
 * Generated files are imported with `import type` only (lint enforces it),
 * so tsx, vitest and the image run without them.
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

import type { AckRequest__Output as AckRequestWire } from '../gen/speedlayer/v1/AckRequest.js';
import type { AckResponse__Output as AckResponseWire } from '../gen/speedlayer/v1/AckResponse.js';
import type { AdoptRequest__Output as AdoptRequestWire } from '../gen/speedlayer/v1/AdoptRequest.js';
import type { AdoptResponse__Output as AdoptResponseWire } from '../gen/speedlayer/v1/AdoptResponse.js';
import type { CheckpointRequest__Output as CheckpointRequestWire } from '../gen/speedlayer/v1/CheckpointRequest.js';
import type { CheckpointResponse__Output as CheckpointResponseWire } from '../gen/speedlayer/v1/CheckpointResponse.js';
import type { CountsRequest__Output as CountsRequestWire } from '../gen/speedlayer/v1/CountsRequest.js';
import type { CountsResponse__Output as CountsResponseWire } from '../gen/speedlayer/v1/CountsResponse.js';
import type { CreateFilingRequest__Output as CreateFilingRequestWire } from '../gen/speedlayer/v1/CreateFilingRequest.js';
import type {
  CreateFilingResponse as CreateFilingResponseWireInput,
  CreateFilingResponse__Output as CreateFilingResponseWire,
} from '../gen/speedlayer/v1/CreateFilingResponse.js';
import type { CurrentRequest__Output as CurrentRequestWire } from '../gen/speedlayer/v1/CurrentRequest.js';
import type { CurrentResponse__Output as CurrentResponseWire } from '../gen/speedlayer/v1/CurrentResponse.js';
import type {
  CurrentRow__Output as CurrentRowWire,
  CurrentRow as CurrentRowWireInput,
} from '../gen/speedlayer/v1/CurrentRow.js';
import type { DeadLetter__Output as DeadLetterWire } from '../gen/speedlayer/v1/DeadLetter.js';
import type { ErrorDetail__Output as ErrorDetailWire } from '../gen/speedlayer/v1/ErrorDetail.js';
import type { Event__Output as EventWire } from '../gen/speedlayer/v1/Event.js';
import type { EventBatchRequest__Output as EventBatchRequestWire } from '../gen/speedlayer/v1/EventBatchRequest.js';
import type {
  FilingRow__Output as FilingRowWire,
  FilingRow as FilingRowWireInput,
} from '../gen/speedlayer/v1/FilingRow.js';
import type {
  FilingView__Output as FilingViewWire,
  FilingView as FilingViewWireInput,
} from '../gen/speedlayer/v1/FilingView.js';
import type { FinishRequest__Output as FinishRequestWire } from '../gen/speedlayer/v1/FinishRequest.js';
import type { FinishResponse__Output as FinishResponseWire } from '../gen/speedlayer/v1/FinishResponse.js';
import type { HistoryRequest__Output as HistoryRequestWire } from '../gen/speedlayer/v1/HistoryRequest.js';
import type { HistoryResponse__Output as HistoryResponseWire } from '../gen/speedlayer/v1/HistoryResponse.js';
import type { IngestAck__Output as IngestAckWire } from '../gen/speedlayer/v1/IngestAck.js';
import type { ListFilingsRequest__Output as ListFilingsRequestWire } from '../gen/speedlayer/v1/ListFilingsRequest.js';
import type { ListFilingsResponse__Output as ListFilingsResponseWire } from '../gen/speedlayer/v1/ListFilingsResponse.js';
import type {
  PartitionAck__Output as PartitionAckWire,
  PartitionAck as PartitionAckWireInput,
} from '../gen/speedlayer/v1/PartitionAck.js';
import type {
  PartitionBatch__Output as PartitionBatchWire,
  PartitionBatch as PartitionBatchWireInput,
} from '../gen/speedlayer/v1/PartitionBatch.js';
import type {
  PartitionChunk__Output as PartitionChunkWire,
  PartitionChunk as PartitionChunkWireInput,
} from '../gen/speedlayer/v1/PartitionChunk.js';
import type {
  PartitionCounts__Output as PartitionCountsWire,
  PartitionCounts as PartitionCountsWireInput,
} from '../gen/speedlayer/v1/PartitionCounts.js';
import type { PartitionEntry__Output as PartitionEntryWire } from '../gen/speedlayer/v1/PartitionEntry.js';
import type {
  PartitionReport__Output as PartitionReportWire,
  PartitionReport as PartitionReportWireInput,
} from '../gen/speedlayer/v1/PartitionReport.js';
import type { PartitionStatus__Output as PartitionStatusWire } from '../gen/speedlayer/v1/PartitionStatus.js';
import type {
  Period__Output as PeriodWire,
  Period as PeriodWireInput,
} from '../gen/speedlayer/v1/Period.js';
import type {
  PeriodChange__Output as PeriodChangeWire,
  PeriodChange as PeriodChangeWireInput,
} from '../gen/speedlayer/v1/PeriodChange.js';
import type { PeriodCount__Output as PeriodCountWire } from '../gen/speedlayer/v1/PeriodCount.js';
import type {
  PeriodRange__Output as PeriodRangeWire,
  PeriodRange as PeriodRangeWireInput,
} from '../gen/speedlayer/v1/PeriodRange.js';
import type { PeriodStatus__Output as PeriodStatusWire } from '../gen/speedlayer/v1/PeriodStatus.js';
import type { PeriodType__Output as PeriodTypeWire } from '../gen/speedlayer/v1/PeriodType.js';
import type { RejectReason__Output as RejectReasonWire } from '../gen/speedlayer/v1/RejectReason.js';
import type {
  RejectSummary__Output as RejectSummaryWire,
  RejectSummary as RejectSummaryWireInput,
} from '../gen/speedlayer/v1/RejectSummary.js';
import type { Rejection__Output as RejectionWire } from '../gen/speedlayer/v1/Rejection.js';
import type { RejectsRequest__Output as RejectsRequestWire } from '../gen/speedlayer/v1/RejectsRequest.js';
import type { RejectsResponse__Output as RejectsResponseWire } from '../gen/speedlayer/v1/RejectsResponse.js';
import type { ReleaseRequest__Output as ReleaseRequestWire } from '../gen/speedlayer/v1/ReleaseRequest.js';
import type { ReportRequest__Output as ReportRequestWire } from '../gen/speedlayer/v1/ReportRequest.js';
import type { ReportResponse__Output as ReportResponseWire } from '../gen/speedlayer/v1/ReportResponse.js';
import type { RouteAck__Output as RouteAckWire } from '../gen/speedlayer/v1/RouteAck.js';
import type { RouteRequest__Output as RouteRequestWire } from '../gen/speedlayer/v1/RouteRequest.js';
import type { StatusRequest__Output as StatusRequestWire } from '../gen/speedlayer/v1/StatusRequest.js';
import type { StatusResponse__Output as StatusResponseWire } from '../gen/speedlayer/v1/StatusResponse.js';
import type { UnreadableRecord__Output as UnreadableRecordWire } from '../gen/speedlayer/v1/UnreadableRecord.js';
import type {
  VersionRow__Output as VersionRowWire,
  VersionRow as VersionRowWireInput,
} from '../gen/speedlayer/v1/VersionRow.js';
import type { WatchVersionsRequest__Output as WatchVersionsRequestWire } from '../gen/speedlayer/v1/WatchVersionsRequest.js';
import type { WatermarkMark__Output as WatermarkMarkWire } from '../gen/speedlayer/v1/WatermarkMark.js';
import type {
  CoordinatorClient,
  CoordinatorDefinition,
  CoordinatorHandlers,
} from '../gen/speedlayer/v1/Coordinator.js';
import type {
  IngestClient,
  IngestDefinition,
  IngestHandlers,
} from '../gen/speedlayer/v1/Ingest.js';
import type { QueryClient, QueryDefinition, QueryHandlers } from '../gen/speedlayer/v1/Query.js';
import type { ShardClient, ShardDefinition, ShardHandlers } from '../gen/speedlayer/v1/Shard.js';
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
export interface SpeedlayerService<
  Client,
  Handlers extends grpc.UntypedServiceImplementation,
  Definition extends grpc.ServiceDefinition = grpc.ServiceDefinition<Handlers>,
> {
  /** Fully qualified name, e.g. `speedlayer.v1.Query`. */
  readonly name: string;
  /** The client class: `new service.Client(address, credentials)`. */
  readonly Client: SpeedlayerClientConstructor<Client>;
  /**
   * What `server.addService` takes, keyed by method name, with each method's
   * serializers typed by its messages.
   */
  readonly definition: Definition;
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
  readonly ingest: SpeedlayerService<IngestClient, IngestHandlers, IngestDefinition>;
  readonly shard: SpeedlayerService<ShardClient, ShardHandlers, ShardDefinition>;
  readonly coordinator: SpeedlayerService<
    CoordinatorClient,
    CoordinatorHandlers,
    CoordinatorDefinition
  >;
  readonly query: SpeedlayerService<QueryClient, QueryHandlers, QueryDefinition>;
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
  handlers: NoInfer<Handlers>,
): void {
  server.addService(service.definition, handlers);
}

function serviceOf<
  Client,
  Handlers extends grpc.UntypedServiceImplementation,
  Definition extends grpc.ServiceDefinition,
>(grpcObject: grpc.GrpcObject, name: string): SpeedlayerService<Client, Handlers, Definition> {
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
    definition: Client.service as Definition,
  };
}

// ---------------------------------------------------------------------------
// Wire messages, generated from proto/ (see the top of this file): `XWire`
// for every message, `XWireInput` for those this code builds to send
// ---------------------------------------------------------------------------

export type { PeriodTypeWire, PeriodStatusWire, RejectReasonWire };

// common.proto
export type { PeriodWire, PeriodWireInput, PeriodRangeWire, PeriodRangeWireInput, ErrorDetailWire };

// ingest.proto
export type {
  EventWire,
  UnreadableRecordWire,
  EventBatchRequestWire,
  FinishRequestWire,
  FinishResponseWire,
  RejectionWire,
  IngestAckWire,
};

// shard.proto
export type {
  WatermarkMarkWire,
  PartitionBatchWire,
  PartitionBatchWireInput,
  RouteRequestWire,
  RouteAckWire,
  PeriodCountWire,
  PeriodChangeWire,
  PeriodChangeWireInput,
  PartitionReportWire,
  PartitionReportWireInput,
  ReportRequestWire,
  ReportResponseWire,
  CountsRequestWire,
  PartitionCountsWire,
  PartitionCountsWireInput,
  CountsResponseWire,
  PartitionAckWire,
  PartitionAckWireInput,
  AckRequestWire,
  AckResponseWire,
  CheckpointRequestWire,
  CheckpointResponseWire,
  AdoptRequestWire,
  AdoptResponseWire,
  ReleaseRequestWire,
  PartitionEntryWire,
  PartitionChunkWire,
  PartitionChunkWireInput,
};

// coordinator.proto
export type { StatusRequestWire, PartitionStatusWire, StatusResponseWire };

// query.proto
export type {
  CurrentRowWire,
  CurrentRowWireInput,
  VersionRowWire,
  VersionRowWireInput,
  FilingRowWire,
  FilingRowWireInput,
  FilingViewWire,
  FilingViewWireInput,
  DeadLetterWire,
  RejectSummaryWire,
  RejectSummaryWireInput,
  CurrentRequestWire,
  CurrentResponseWire,
  HistoryRequestWire,
  HistoryResponseWire,
  ListFilingsRequestWire,
  ListFilingsResponseWire,
  CreateFilingRequestWire,
  CreateFilingResponseWire,
  CreateFilingResponseWireInput,
  RejectsRequestWire,
  RejectsResponseWire,
  WatchVersionsRequestWire,
};

// ---------------------------------------------------------------------------
// Typed clients and handlers
// ---------------------------------------------------------------------------

// The generated client classes type each method's request as what may be
// sent and its response as what is received; the generated handlers the
// other way round.
export type {
  CoordinatorClient,
  CoordinatorHandlers,
  IngestClient,
  IngestHandlers,
  QueryClient,
  QueryHandlers,
  ShardClient,
  ShardHandlers,
};

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

export function periodToWire(period: Period): PeriodWireInput {
  return { type: periodTypeToWire(period.type), start_ms: period.startMs };
}

/** @throws WireFormatError when the period is missing or its type unspecified. */
export function periodFromWire(wire: PeriodWire | null | undefined): Period {
  if (wire == null) throw new WireFormatError('a period is missing');

  return { type: periodTypeFromWire(wire.type), startMs: wire.start_ms };
}

/** A period key such as `day:1427155200000` as a Period message. */
export function periodKeyToWire(key: string): PeriodWireInput {
  return periodToWire(parsePeriodKey(key));
}

/** A Period message as a period key such as `day:1427155200000`. */
export function periodKeyFromWire(wire: PeriodWire | null | undefined): string {
  return periodKey(periodFromWire(wire));
}

export function periodRangeToWire(range: PeriodRange): PeriodRangeWireInput {
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

export function partitionBatchToWire(batch: PartitionBatch): PartitionBatchWireInput {
  return {
    partition: batch.partition,
    user_ids: [...batch.userIds],
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

export function reportToWire(report: PartitionReport): PartitionReportWireInput {
  return {
    partition: report.partition,
    ...watermarkToWire(report.watermarkMs),
    seals: report.seals.map((s) => ({ period: periodKeyToWire(s.key), count: s.count })),
    changes: report.changes.map(periodChangeToWire),
    open_periods: report.openPeriods.map(periodKeyToWire),
    ...(report.allowedLatenessMs === undefined
      ? {}
      : { allowed_lateness_ms: report.allowedLatenessMs }),
  };
}

export function reportFromWire(wire: PartitionReportWire): PartitionReport {
  return {
    partition: wire.partition,
    watermarkMs: wire.watermark_ms ?? Number.NEGATIVE_INFINITY,
    seals: wire.seals.map((s) => ({ key: periodKeyFromWire(s.period), count: s.count })),
    changes: wire.changes.map(periodChangeFromWire),
    openPeriods: wire.open_periods.map(periodKeyFromWire),
    ...(wire.allowed_lateness_ms === undefined
      ? {}
      : { allowedLatenessMs: wire.allowed_lateness_ms }),
  };
}

/** One partition's counts, keyed by period key, as a PartitionCounts message. */
export function partitionCountsToWire(
  partition: number,
  counts: ReadonlyMap<string, number>,
): PartitionCountsWireInput {
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

export function partitionAckToWire(ack: PartitionAck): PartitionAckWireInput {
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

export function partitionChunkToWire(chunk: PartitionChunk): PartitionChunkWireInput {
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

export function currentRowToWire(row: CurrentRow): CurrentRowWireInput {
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

export function versionRowToWire(row: VersionRow): VersionRowWireInput {
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

export function filingRowToWire(row: FilingRow): FilingRowWireInput {
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

export function filingViewToWire(view: FilingView): FilingViewWireInput {
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
export function rejectSummaryToWire(summary: DeadLetterSummary): RejectSummaryWireInput[] {
  const out: RejectSummaryWireInput[] = [];
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

function periodChangeToWire(change: PeriodChange): PeriodChangeWireInput {
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
