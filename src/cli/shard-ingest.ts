/**
 * The Ingest and Query services of `speedlayer shard`, served on the shard's own port
 * when it is given a warehouse (--postgres): one address then takes events and queries.
 * Events are judged by this node's IngestRouter and routed to the owners the ring names;
 * rejected ones go to the warehouse's dead-letter table, which Query reads.
 */
import { Option, type Command } from 'commander';

import {
  ENGINE_DEFAULTS,
  choiceFlag,
  defaultPostgresUrl,
  durationFlag,
  resolveEngineSettings,
} from '../config/index.js';
import type { Logger } from '../observability/index.js';
import type { PartitionHost } from '../shard/partition-host.js';
import type { Warehouse } from '../sink/warehouse.js';
import {
  INGEST_WATERMARK_MODES,
  IngestRouter,
  type IngestSettings,
  type IngestWatermarkMode,
} from '../transport/ingest-router.js';
import { ingestService } from '../transport/ingest-server.js';
import { queryService } from '../transport/query-server.js';
import type { RingSource } from '../transport/routing-table.js';
import type { ServedService } from '../transport/served-service.js';
import type { ShardMetrics } from '../transport/shard-metrics.js';
import { CommandExit } from './io.js';
import { openWarehouse } from './warehouse-options.js';

export interface IngestFlags {
  postgres?: string;
  postgresSchema?: string;
  watermark: IngestWatermarkMode;
  restatementHorizon: number;
  maxFutureSkew: number;
  maxOutOfOrderness: number;
}

/** Adds the warehouse and judging flags of the Ingest service to a command. */
export function withIngestFlags(command: Command): Command {
  return command
    .option(
      '--postgres <url>',
      'PostgreSQL server of the rows and dead letters: also serve Ingest and Query on this port (default: SPEEDLAYER_POSTGRES_URL; none: Shard only)',
      defaultPostgresUrl(),
    )
    .option('--postgres-schema <name>', 'schema of the tables on the PostgreSQL server')
    .addOption(
      new Option(
        '--watermark <mode>',
        'how the ingest watermark moves: event-time (replay in file order), receive-time (replay in receive order) or wall-clock (live)',
      )
        .argParser(choiceFlag(INGEST_WATERMARK_MODES))
        .default('wall-clock'),
    )
    .addOption(
      new Option(
        '--restatement-horizon <duration>',
        'how far behind the watermark an event may restate its period',
      )
        .argParser(durationFlag)
        .default(ENGINE_DEFAULTS.restatementHorizonMs, '35d'),
    )
    .addOption(
      new Option(
        '--max-future-skew <duration>',
        'how far past its receive time an event time may be',
      )
        .argParser(durationFlag)
        .default(ENGINE_DEFAULTS.maxFutureSkewMs, '5m'),
    )
    .addOption(
      new Option(
        '--max-out-of-orderness <duration>',
        'how far the watermark trails the latest event time or clock',
      )
        .argParser(durationFlag)
        .default(ENGINE_DEFAULTS.maxOutOfOrdernessMs, '0s'),
    );
}

/** The judging settings of the flags, checked as the engine checks them; exit 2 when wrong. */
export function ingestSettingsOf(
  flags: IngestFlags,
  partitions: number,
  allowedLatenessMs: number,
): IngestSettings {
  try {
    return resolveEngineSettings({
      partitions,
      allowedLatenessMs,
      restatementHorizonMs: flags.restatementHorizon,
      maxFutureSkewMs: flags.maxFutureSkew,
      maxOutOfOrdernessMs: flags.maxOutOfOrderness,
      watermarkMode: 'clock',
    });
  } catch (err) {
    throw new CommandExit(2, err instanceof Error ? err.message : String(err));
  }
}

export interface ShardIngestContext {
  readonly nodeId: string;
  readonly dataDir: string;
  readonly settings: IngestSettings;
  readonly ring: RingSource;
  readonly localHost: () => PartitionHost | undefined;
  readonly logger: Logger;
  /** With --metrics-port: where the router counts batches, events and deliveries. */
  readonly metrics?: ShardMetrics;
}

/** A shard's Ingest and Query services and what they run on. */
export class ShardIngest {
  private closing: Promise<void> | undefined;

  private constructor(
    readonly router: IngestRouter,
    private readonly warehouse: Warehouse,
    /** The services to serve on the shard's port. */
    readonly services: readonly ServedService[],
  ) {}

  /** Opens the warehouse and the router (restoring its position from the data directory). */
  static async open(flags: IngestFlags, context: ShardIngestContext): Promise<ShardIngest> {
    const warehouse = await openWarehouse({
      dataDir: context.dataDir,
      postgres: flags.postgres,
      postgresSchema: flags.postgresSchema,
    });

    try {
      const logger = context.logger.child({ component: 'ingest' });
      const router = await IngestRouter.open({
        ...context.settings,
        nodeId: context.nodeId,
        watermark: flags.watermark,
        ring: context.ring,
        localHost: context.localHost,
        deadLetters: warehouse,
        dataDir: context.dataDir,
        // A node new to a running cluster starts where the published numbers are.
        watermarkFloor: () => warehouse.latestWatermark(),
        logger,
        metrics: context.metrics,
      });
      const services = [
        ingestService({ router, logger }),
        queryService({ warehouse, logger: context.logger.child({ component: 'query-service' }) }),
      ];

      return new ShardIngest(router, warehouse, services);
    } catch (err) {
      await warehouse.close();
      throw err;
    }
  }

  /** Closes the router, then the warehouse. Close the server first. Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.router.close();
      await this.warehouse.close();
    })();

    return this.closing;
  }
}
