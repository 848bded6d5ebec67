/**
 * The coordinator's Prometheus metrics, fed by a {@link CoordinatorService}'s events.
 * The status series are the leader's: a standby exports `is_leader 0`, zeros for the
 * unlabelled gauges and no partition series, so that a query over every coordinator sees
 * one leader's numbers (e.g. `max(speedlayer_missing_partitions)`).
 */
import { Counter, Gauge, type Registry } from '../observability/index.js';
import type { StatusRecord } from '../ring/index.js';
import type { RoundResult } from './coordinator.js';
import type { CoordinatorService, CoordinatorServiceState } from './coordinator-service.js';

/** How a round ended, as `speedlayer_rounds_total{outcome}` counts it. */
export type RoundOutcome = 'published' | 'held_back' | 'failed';

/** The metrics of one coordinator process, registered on `registry`. */
export class CoordinatorMetrics {
  private readonly isLeader: Gauge;
  private readonly missing: Gauge;
  private readonly reported: Gauge<'partition'>;
  private readonly partitionWatermark: Gauge<'partition'>;
  private readonly globalWatermark: Gauge;
  private readonly ringEpoch: Gauge;
  private readonly lastRound: Gauge;
  private readonly rounds: Counter<'outcome'>;
  private readonly versions: Counter<'status'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.isLeader = new Gauge({
      name: 'speedlayer_coordinator_is_leader',
      help: '1 while this coordinator leads, else 0',
      registers,
    });
    this.missing = new Gauge({
      name: 'speedlayer_missing_partitions',
      help: "partitions that did not report in the leader's last round; while above 0 no final or restated number is published",
      registers,
    });
    this.reported = new Gauge({
      name: 'speedlayer_partition_reported',
      help: "1 when the partition reported in the leader's last round, else 0",
      labelNames: ['partition'],
      registers,
    });
    this.partitionWatermark = new Gauge({
      name: 'speedlayer_partition_watermark_seconds',
      help: 'the partition watermark as last reported, Unix seconds',
      labelNames: ['partition'],
      registers,
    });
    this.globalWatermark = new Gauge({
      name: 'speedlayer_global_watermark_seconds',
      help: 'the lowest partition watermark of the last complete round, Unix seconds',
      registers,
    });
    this.ringEpoch = new Gauge({
      name: 'speedlayer_ring_epoch',
      help: "the ring epoch of the leader's rounds",
      registers,
    });
    this.lastRound = new Gauge({
      name: 'speedlayer_last_round_timestamp_seconds',
      help: "when the leader's last round ended, Unix seconds",
      registers,
    });
    this.rounds = new Counter({
      name: 'speedlayer_rounds_total',
      help: 'rounds run while leading: published (every partition reported; what was due was written), held_back (partitions missing), failed',
      labelNames: ['outcome'],
      registers,
    });
    this.versions = new Counter({
      name: 'speedlayer_versions_written_total',
      help: 'rows written by this coordinator: final and restated versions, provisional refreshes',
      labelNames: ['status'],
      registers,
    });

    this.isLeader.set(0);
    for (const outcome of ['published', 'held_back', 'failed'] satisfies RoundOutcome[]) {
      this.rounds.inc({ outcome }, 0);
    }
    for (const status of ['final', 'restated', 'provisional']) this.versions.inc({ status }, 0);
  }

  /** Follows `service` until the returned function is called. */
  observe(service: CoordinatorService): () => void {
    const onState = (to: CoordinatorServiceState): void => this.noteState(to);
    const onRound = (result: RoundResult): void => this.noteRound(result);
    const onFailed = (): void => this.rounds.inc({ outcome: 'failed' });
    const onStatus = (record: StatusRecord): void => this.noteStatus(record);
    service.on('state', onState);
    service.on('round', onRound);
    service.on('roundFailed', onFailed);
    service.on('status', onStatus);
    this.noteState(service.state);

    return () => {
      service.off('state', onState);
      service.off('round', onRound);
      service.off('roundFailed', onFailed);
      service.off('status', onStatus);
    };
  }

  private noteState(state: CoordinatorServiceState): void {
    if (state === 'leading') {
      this.isLeader.set(1);
      return;
    }

    // What a former leader knew is stale the moment it stops leading.
    this.isLeader.set(0);
    for (const gauge of [this.missing, this.globalWatermark, this.ringEpoch, this.lastRound]) {
      gauge.reset();
    }
    this.reported.reset();
    this.partitionWatermark.reset();
  }

  private noteRound(result: RoundResult): void {
    const outcome: RoundOutcome = result.missingPartitions.length > 0 ? 'held_back' : 'published';
    this.rounds.inc({ outcome });
    this.versions.inc({ status: 'final' }, result.finals);
    this.versions.inc({ status: 'restated' }, result.restated);
    this.versions.inc({ status: 'provisional' }, result.provisional);
  }

  private noteStatus(record: StatusRecord): void {
    this.missing.set(record.missingPartitions.length);
    this.ringEpoch.set(record.ringEpoch);
    if (record.globalWatermarkMs !== undefined) {
      this.globalWatermark.set(record.globalWatermarkMs / 1000);
    }
    if (record.lastRoundAtMs !== undefined) this.lastRound.set(record.lastRoundAtMs / 1000);
    for (const p of record.partitions) {
      const partition = String(p.partition);
      this.reported.set({ partition }, p.reported ? 1 : 0);
      if (p.watermarkMs !== undefined) {
        this.partitionWatermark.set({ partition }, p.watermarkMs / 1000);
      }
    }
  }
}
