/**
 * Replays the shared cases (`shared/cases/*.json`) through the single-process engine
 * exactly as `shared/cases/README.md` prescribes, and compares what the warehouse holds at
 * the end with each case's `expected` answers.
 *
 * Three steps, each its own export:
 *
 * 1. {@link loadCases} reads the case files of a folder (not its sub-folders);
 * 2. {@link replayCase} configures an {@link EmbeddedNode}, sends the events in arrival
 *    order on a harness-owned clock, performs the controls and ends as the README's step 5
 *    says; it returns what it observed;
 * 3. {@link checkCase} turns every difference from `expected` into one readable line, so
 *    that a failing case lists all of its problems at once.
 *
 * The case format, the timeline and the checks live in case-format.ts, case-steps.ts and
 * case-check.ts, which the cluster harness (cluster-case-harness.ts) shares.
 */
import { EmbeddedNode, type EngineSettings } from '../../src/embedded/embedded-node.js';
import type { EventBatch } from '../../src/ingest/index.js';
import { silentLogger } from '../../src/observability/index.js';
import type { Warehouse } from '../../src/sink/index.js';
import { VersionWatch, readRun, type CaseRun } from './case-check.js';
import type { CaseControl, SharedCase } from './case-format.js';
import { driveCase, planCase, type CaseTarget } from './case-steps.js';

export { checkCase, compareRuns } from './case-check.js';
export type { CaseRun, SeenVersion } from './case-check.js';
export { caseSettings, loadCases } from './case-format.js';
export type { CaseSettings, SharedCase } from './case-format.js';

/** Where a case runs: a fresh warehouse and a LevelDB directory of its own. */
export interface CasePlace {
  readonly warehouse: Warehouse;
  readonly stateDir: string;
}

/**
 * Runs one case on the harness clock (README steps 1-5).
 *
 * Every batch is followed by a round, and a round checkpoints before it closes periods:
 * that checkpoint is the acknowledgement of the batch (DESIGN invariant 3), so a crash
 * after it loses nothing the case sent.
 */
export async function replayCase(c: SharedCase, place: CasePlace): Promise<CaseRun> {
  const plan = planCase(c);
  const replay = new CaseReplay(c, plan.settings.engine, place);
  await replay.start();
  try {
    await driveCase(c, plan, replay);
  } finally {
    await replay.abandon();
  }

  return readRun(place.warehouse, replay.watch, plan.records);
}

/**
 * The single process under the harness clock. A kill with `graceful: false` closes the node
 * without a checkpoint (what was not acknowledged is lost, as after SIGKILL); any other kill
 * drains it. A restart opens it again on the same LevelDB directory and warehouse, and the
 * node resumes from its last checkpoint. Batches that arrive while it is down wait for the
 * restart, as a client retries until it is acknowledged.
 *
 * Every shard is this one process, so `owner_of:<user>` names the whole node and
 * `scale_shards` changes nothing (partitions, not shards, hold the counts); the cluster
 * harness performs the same controls on real shard processes.
 */
class CaseReplay implements CaseTarget {
  readonly watch = new VersionWatch();
  private node: EmbeddedNode | null = null;
  private clockMs = Number.NEGATIVE_INFINITY;
  private waiting: EventBatch[] = [];

  constructor(
    private readonly c: SharedCase,
    private readonly engine: EngineSettings,
    private readonly place: CasePlace,
  ) {}

  async start(): Promise<void> {
    this.node = await EmbeddedNode.open({
      ...this.engine,
      stateDir: this.place.stateDir,
      warehouse: this.place.warehouse,
      logger: silentLogger(),
      now: () => this.clockMs,
    });
    if (Number.isFinite(this.clockMs)) {
      await this.node.advanceClock(this.clockMs);
    }
  }

  async closePoint(atMs: number): Promise<void> {
    await this.moveClock(atMs);
    await this.round();
  }

  async moveClock(atMs: number): Promise<void> {
    this.clockMs = atMs;
    await this.node?.advanceClock(atMs);
  }

  /** Sends one batch with its receive times, and acknowledges it through a round. */
  async deliver(batch: EventBatch): Promise<void> {
    if (this.node === null) {
      this.waiting.push(batch);
      return;
    }

    await this.node.ingest(batch);
    await this.round();
  }

  async control(control: CaseControl): Promise<void> {
    switch (control.action) {
      case 'kill_shard':
      case 'kill_all_shards':
        await this.kill(control.graceful !== false);
        return;
      case 'restart_shard':
      case 'restart_all_shards':
        await this.restart();
        return;
      case 'scale_shards':
        return;
      default:
        throw new Error(`${this.c.id}: unknown control action ${control.action}`);
    }
  }

  /** Closes every period and runs the last round (a restart first, if the node is down). */
  async end(): Promise<void> {
    await this.restart();
    const node = this.node as EmbeddedNode;
    await node.finish();
    await node.close();
    this.node = null;
    await this.observe();
  }

  /** Releases the node after a failure; a no-op once {@link end} has run. */
  async abandon(): Promise<void> {
    await this.node?.abandon();
    this.node = null;
  }

  private async kill(graceful: boolean): Promise<void> {
    if (this.node === null) {
      return;
    }

    // SIGTERM drains (a checkpoint and a last round); SIGKILL loses what was not checkpointed.
    await (graceful ? this.node.close() : this.node.abandon());
    this.node = null;
    await this.observe();
  }

  private async restart(): Promise<void> {
    if (this.node !== null) {
      return;
    }

    await this.start();
    await this.round();
    for (const batch of this.waiting.splice(0)) {
      await this.deliver(batch);
    }
  }

  private async round(): Promise<void> {
    if (this.node === null) {
      return;
    }

    await this.node.round();
    await this.observe();
  }

  private async observe(): Promise<void> {
    await this.watch.observe(this.place.warehouse, this.clockMs);
  }
}
