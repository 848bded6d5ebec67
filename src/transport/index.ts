export {
  PROTO_DIR,
  PROTO_FILES,
  PROTO_LOADER_OPTIONS,
  PROTO_PACKAGE,
  WIRE_CONVERSION_OPTIONS,
  WireFormatError,
  addSpeedlayerService,
  currentRowFromWire,
  currentRowToWire,
  filingRowFromWire,
  filingRowToWire,
  filingViewFromWire,
  filingViewToWire,
  loadSpeedlayerProtos,
  loadSpeedlayerRoot,
  partitionAckFromWire,
  partitionAckToWire,
  partitionBatchFromWire,
  partitionBatchToWire,
  partitionChunkFromWire,
  partitionChunkToWire,
  partitionCountsFromWire,
  partitionCountsToWire,
  periodFromWire,
  periodKeyFromWire,
  periodKeyToWire,
  periodRangeFromWire,
  periodRangeToWire,
  periodStatusFromWire,
  periodStatusToWire,
  periodToWire,
  periodTypeFromWire,
  periodTypeToWire,
  rejectReasonFromWire,
  rejectReasonToWire,
  rejectSummaryFromWire,
  rejectSummaryToWire,
  reportFromWire,
  reportToWire,
  versionRowFromWire,
  versionRowToWire,
} from './proto.js';
export type {
  AckRequestWire,
  AckResponseWire,
  AdoptRequestWire,
  AdoptResponseWire,
  CheckpointRequestWire,
  CheckpointResponseWire,
  CoordinatorClient,
  CoordinatorHandlers,
  CountsRequestWire,
  CountsResponseWire,
  CreateFilingRequestWire,
  CreateFilingResponseWire,
  CreateFilingResponseWireInput,
  CurrentRequestWire,
  CurrentResponseWire,
  CurrentRowWire,
  CurrentRowWireInput,
  DeadLetterWire,
  ErrorDetailWire,
  EventBatchRequestWire,
  EventWire,
  FilingRowWire,
  FilingRowWireInput,
  FilingViewWire,
  FilingViewWireInput,
  HistoryRequestWire,
  HistoryResponseWire,
  IngestAckWire,
  IngestClient,
  IngestHandlers,
  ListFilingsRequestWire,
  ListFilingsResponseWire,
  PartitionAckWire,
  PartitionAckWireInput,
  PartitionBatchWire,
  PartitionBatchWireInput,
  PartitionChunkWire,
  PartitionChunkWireInput,
  PartitionCountsWire,
  PartitionCountsWireInput,
  PartitionEntryWire,
  PartitionReportWire,
  PartitionReportWireInput,
  PartitionStatusWire,
  PeriodChangeWire,
  PeriodChangeWireInput,
  PeriodCountWire,
  PeriodRangeWire,
  PeriodRangeWireInput,
  PeriodStatusWire,
  PeriodTypeWire,
  PeriodWire,
  PeriodWireInput,
  QueryClient,
  QueryHandlers,
  RejectReasonWire,
  RejectSummaryWire,
  RejectSummaryWireInput,
  RejectionWire,
  RejectsRequestWire,
  RejectsResponseWire,
  ReleaseRequestWire,
  ReportRequestWire,
  ReportResponseWire,
  RouteAckWire,
  RouteRequestWire,
  ShardClient,
  ShardHandlers,
  SpeedlayerClientConstructor,
  SpeedlayerProtos,
  SpeedlayerService,
  StatusRequestWire,
  StatusResponseWire,
  UnaryClientMethod,
  VersionRowWire,
  VersionRowWireInput,
  WatchVersionsRequestWire,
  WatermarkMarkWire,
} from './proto.js';
export { GrpcPartitionsPort } from './grpc-partitions.js';
export type { GrpcPartitionsPortOptions } from './grpc-partitions.js';
export { QueryClient as QueryServiceClient } from './query-client.js';
export type { QueryClientOptions, WatchOptions } from './query-client.js';
export {
  QueryError,
  isQueryError,
  rethrowGrpcError as rethrowQueryGrpcError,
} from './query-errors.js';
export type { QueryErrorKind } from './query-errors.js';
export { resolveQueryServerOptions, startQueryServer } from './query-server.js';
export type { QueryServer, QueryServerOptions, QueryWarehouse } from './query-server.js';
export { ShardRpcClient } from './shard-client.js';
export type { AdoptCall, ReleaseCall, ShardRpcClientOptions } from './shard-client.js';
export { rethrowGrpcError as rethrowShardGrpcError, toShardError } from './shard-errors.js';
export { ShardServer, shardHandlers } from './shard-server.js';
export type { ShardServerOptions } from './shard-server.js';
export { shardHandoffHandlers } from './shard-handoff.js';
export type { ShardHandoffOptions } from './shard-handoff.js';
export { readErrorDetail, errorDetailTrailer } from './status-details.js';
export { StatusCallError, fetchStatus } from './status-client.js';
export type { StatusClientOptions } from './status-client.js';
export {
  COORDINATOR_PROTO_FILE,
  COORDINATOR_SERVICE,
  STATUS_ERROR_CODES,
  addStatusService,
  startCoordinatorServer,
  statusFromWire,
  statusHandlers,
  statusService,
  statusToWire,
  storeStatusSource,
} from './status-service.js';
export type {
  CoordinatorServer,
  CoordinatorServerOptions,
  PartitionStatusView,
  StatusServiceOptions,
  StatusSource,
  StatusView,
} from './status-service.js';
export { MAX_EVENTS_PER_REQUEST, MAX_UNREADABLE_PER_REQUEST } from './ingest-batch.js';
export { IngestClientError, IngestClient as IngestServiceClient } from './ingest-client.js';
export type {
  BatchOutcome,
  IngestClientErrorKind,
  IngestClientOptions,
  IngestTotals,
  SendOptions,
} from './ingest-client.js';
export { IngestError, asIngestError, ingestStatus } from './ingest-errors.js';
export type { IngestErrorKind } from './ingest-errors.js';
export { cutBatch, eventBatchToWire, lineRangeOf } from './ingest-requests.js';
export { INGEST_WATERMARK_MODES, IngestRouter } from './ingest-router.js';
export type {
  DeadLetterSink,
  IngestRouterOptions,
  IngestSettings,
  IngestWatermarkMode,
} from './ingest-router.js';
export { INGEST_SERVICE, ingestHandlers, ingestService } from './ingest-server.js';
export type { IngestServiceOptions } from './ingest-server.js';
export { PartitionDelivery, concatPartitionBatches } from './partition-delivery.js';
export type { PartitionDeliveryOptions } from './partition-delivery.js';
export { queryService } from './query-server.js';
export { RingView } from './routing-table.js';
export type { RingSource, RoutingTable } from './routing-table.js';
export type { ServedService } from './served-service.js';
