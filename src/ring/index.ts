export {
  EtcdCoordinationStore,
  resolveEtcdCoordinationStoreOptions,
} from './coordination-store.js';
export type {
  CampaignOptions,
  CoordinationStore,
  Emitter,
  EtcdCoordinationStoreOptions,
  LeaderInfo,
  Leadership,
  LeadershipEvents,
  LeadershipState,
  Membership,
  MembershipEvents,
  MembershipState,
  RegisterShardOptions,
  ResolvedEtcdCoordinationStoreOptions,
  ShardInfo,
  Subscription,
  SubscriptionEvents,
  WriteRingOptions,
  WriteStatusOptions,
} from './coordination-store.js';
export { RingError, isRingError } from './errors.js';
export type { RingErrorKind, RingErrorOptions } from './errors.js';
export { MIN_LEASE_TTL_SECONDS } from './lease-keeper.js';
export {
  assertValidRing,
  computeRing,
  diffRings,
  ownerOf,
  partitionsOf,
  ringProblem,
  shardsOf,
} from './ring.js';
export type { PartitionMove, Ring } from './ring.js';
export { encodeStatus, judgeStatus, parseStatus } from './status-record.js';
export type { PartitionStatusRecord, StatusLeader, StatusRecord } from './status-record.js';
