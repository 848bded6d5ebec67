/**
 * The Prometheus metrics of one shard process: what its Ingest service takes in and
 * rejects, how its routed batches reach their owners, and what its partition host holds
 * and applies. The coordinator's are in `src/coordinator/coordinator-metrics.ts`.
 *
 * Everything is counted per batch, never per event: a counter moves by a batch's number
 * of events in one add, and the gauges are read only when the registry is scraped. Label
 * values are bounded: reasons and outcomes are fixed lists, owners are the ring's shard
 * ids.
 */
import { REJECT_REASONS, type RejectReason } from '../ingest/index.js';
import { Counter, Gauge, type Registry } from '../observability/index.js';
import type { PartitionHost, RouteOutcome } from '../shard/partition-host.js';
import type { IngestErrorKind } from './ingest-errors.js';

/** How an ingest batch ended, as `speedlayer_ingest_batches_total{outcome}` counts it. */
export type IngestBatchOutcome = 'acknowledged' | 'invalid_argument' | 'unavailable' | 'internal';

const INGEST_BATCH_OUTCOMES: readonly IngestBatchOutcome[] = [
  'acknowledged',
  'invalid_argument',
  'unavailable',
  'internal',
];

const OUTCOME_OF_KIND: Readonly<Record<IngestErrorKind, IngestBatchOutcome>> = {
  'invalid-argument': 'invalid_argument',
  unavailable: 'unavailable',
  internal: 'internal',
};

/** What one acknowledged ingest batch held. */
export interface AcknowledgedBatch {
  readonly accepted: number;
  /** The reason of each event refused here (no user id, no time, future, too old). */
  readonly rejected: readonly { readonly reason: RejectReason }[];
  /** The reason of each record the client could not read and sent as unreadable. */
  readonly unreadable: readonly { readonly reason: RejectReason }[];
}

/** The metrics of one shard process, registered on `registry`. */
export class ShardMetrics {
  private readonly ingestBatches: Counter<'outcome'>;
  private readonly accepted: Counter;
  private readonly rejected: Counter<'reason'>;
  private readonly unreadable: Counter<'reason'>;
  private readonly delivered: Counter<'owner'>;
  private readonly retries: Counter<'owner'>;
  private readonly applied: Counter;
  private readonly duplicates: Counter;
  private readonly byOutcome = new Map<IngestBatchOutcome, Counter.Internal>();
  private readonly rejectedBy = new Map<RejectReason, Counter.Internal>();
  private readonly unreadableBy = new Map<RejectReason, Counter.Internal>();
  private readonly deliveredTo = new Map<string, Counter.Internal>();
  private readonly retriedTo = new Map<string, Counter.Internal>();
  private queued: () => number = () => 0;
  private host: () => PartitionHost | undefined = () => undefined;

  constructor(readonly registry: Registry) {
    const registers = [registry];
    this.ingestBatches = new Counter({
      name: 'speedlayer_ingest_batches_total',
      help: 'event batches taken by this node over Ingest (Send or SendStream), by outcome: acknowledged, or refused as invalid_argument, unavailable (no ring yet, draining, dead-letter store failing) or internal',
      labelNames: ['outcome'],
      registers,
    });
    this.accepted = new Counter({
      name: 'speedlayer_ingest_events_accepted_total',
      help: 'events of acknowledged batches that this node accepted and routed to their owners',
      registers,
    });
    this.rejected = new Counter({
      name: 'speedlayer_ingest_events_rejected_total',
      help: 'events of acknowledged batches that this node rejected into the dead-letter table, by reason',
      labelNames: ['reason'],
      registers,
    });
    this.unreadable = new Counter({
      name: 'speedlayer_ingest_unreadable_records_total',
      help: 'records of acknowledged batches that the client could not read and sent as unreadable (kept in the dead-letter table), by the reason it gave',
      labelNames: ['reason'],
      registers,
    });
    this.delivered = new Counter({
      name: 'speedlayer_routed_batches_delivered_total',
      help: "partition batches routed by this node and made durable on their partition's owner, by owner shard id",
      labelNames: ['owner'],
      registers,
    });
    this.retries = new Counter({
      name: 'speedlayer_route_retries_total',
      help: 'Route attempts of this node that failed (owner down, not the owner, another ring epoch, partition moving) and are retried, by owner shard id',
      labelNames: ['owner'],
      registers,
    });
    new Gauge({
      name: 'speedlayer_routed_batches_queued',
      help: 'partition batches routed by this node and not yet durable on their owner',
      registers,
      collect: this.collector(() => this.queued()),
    });
    new Gauge({
      name: 'speedlayer_shard_partitions_owned',
      help: 'partitions this shard holds under the ring it serves (0 while it waits for its first assignment)',
      registers,
      collect: this.collector(() => this.host()?.partitions.length ?? 0),
    });
    new Gauge({
      name: 'speedlayer_shard_ring_epoch',
      help: 'the ring epoch under which this shard holds its partitions (0 while it waits for its first assignment)',
      registers,
      collect: this.collector(() => this.host()?.ringEpoch ?? 0),
    });
    new Gauge({
      name: 'speedlayer_shard_known_users',
      help: "distinct user ids in the dictionaries of this shard's partitions",
      registers,
      collect: this.collector(() => this.host()?.knownUsers ?? 0),
    });
    const readHost = (): PartitionHost | undefined => this.host();
    new Gauge({
      name: 'speedlayer_shard_routers',
      help: "ingest routers known to this shard's partitions, by state: counting (a partition's watermark waits for it) or silent (not heard from for --router-silence)",
      labelNames: ['state'],
      registers,
      collect: function (this: Gauge<'state'>) {
        const states = readHost()?.routerStates() ?? { counting: 0, silent: 0 };
        this.set({ state: 'counting' }, states.counting);
        this.set({ state: 'silent' }, states.silent);
      },
    });
    this.applied = new Counter({
      name: 'speedlayer_shard_events_applied_total',
      help: "events applied by this shard's partition actors from routed batches, from any node (a resent batch counts once)",
      registers,
    });
    this.duplicates = new Counter({
      name: 'speedlayer_shard_duplicate_batches_total',
      help: 'routed batches this shard had applied before and acknowledged again without applying (a sender resent them)',
      registers,
    });

    for (const outcome of INGEST_BATCH_OUTCOMES) {
      this.byOutcome.set(outcome, this.ingestBatches.labels({ outcome }));
    }
    for (const reason of REJECT_REASONS) {
      this.rejectedBy.set(reason, this.rejected.labels({ reason }));
      this.unreadableBy.set(reason, this.unreadable.labels({ reason }));
    }
    // Zeros from the start, so that rates and alerts see every series before its first event.
    const children = [...this.byOutcome.values(), ...this.rejectedBy.values()];
    for (const counter of [...children, ...this.unreadableBy.values()]) counter.inc(0);
    for (const counter of [this.accepted, this.applied, this.duplicates]) counter.inc(0);
  }

  /** Reads the partition host serving now at each scrape. */
  observeHost(host: () => PartitionHost | undefined): void {
    this.host = host;
  }

  /** Reads the number of partition batches on their way at each scrape. */
  observeQueue(queued: () => number): void {
    this.queued = queued;
  }

  /** An ingest batch was acknowledged: its events are durable on their owners or dead letters. */
  noteAcknowledged(batch: AcknowledgedBatch): void {
    this.byOutcome.get('acknowledged')?.inc();
    this.accepted.inc(batch.accepted);
    tally(batch.rejected, this.rejectedBy);
    tally(batch.unreadable, this.unreadableBy);
  }

  /** An ingest batch was refused; a refused batch counts none of its events. */
  noteRefused(kind: IngestErrorKind): void {
    this.byOutcome.get(OUTCOME_OF_KIND[kind])?.inc();
  }

  /** `batches` partition batches, sent in one Route, are durable on `owner`. */
  noteDelivered(owner: string, batches: number): void {
    child(this.delivered, this.deliveredTo, owner).inc(batches);
  }

  /** A Route to `owner` failed and will be tried again. */
  noteRetry(owner: string): void {
    child(this.retries, this.retriedTo, owner).inc();
  }

  /** The local partition host answered a routed batch of `events` events. */
  noteRouted(outcome: RouteOutcome, events: number): void {
    if (outcome.duplicate) this.duplicates.inc();
    else this.applied.inc(events);
  }

  private collector(read: () => number): (this: Gauge) => void {
    return function (this: Gauge): void {
      this.set(read());
    };
  }
}

/** Adds each item's reason once, then moves each counter by its total in one add. */
function tally(
  items: readonly { readonly reason: RejectReason }[],
  counters: ReadonlyMap<RejectReason, Counter.Internal>,
): void {
  if (items.length === 0) return;

  const totals = new Map<RejectReason, number>();
  for (const { reason } of items) totals.set(reason, (totals.get(reason) ?? 0) + 1);
  for (const [reason, n] of totals) counters.get(reason)?.inc(n);
}

/** The child of `counter` for one owner, made once; owners are the ring's shard ids. */
function child(
  counter: Counter<'owner'>,
  children: Map<string, Counter.Internal>,
  owner: string,
): Counter.Internal {
  let found = children.get(owner);
  if (found === undefined) {
    found = counter.labels({ owner });
    children.set(owner, found);
  }

  return found;
}
