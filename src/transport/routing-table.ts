/**
 * Where a node sends each partition's events: the ring (partition -> shard id, with its
 * epoch) and the address of each shard. A shard process fills it from its etcd watches
 * of the ring and of shard membership; tests give a fixed one.
 */
import type { Ring } from '../ring/index.js';

/** The ring and the shards' addresses, as one node sees them now. */
export interface RoutingTable {
  readonly ring: Ring;
  /** Where each shard listens, `host:port`, by shard id; a shard not registered is missing. */
  readonly addresses: ReadonlyMap<string, string>;
}

/** What a router reads the routing table from. */
export interface RingSource {
  /** The table now; undefined while no ring is known. */
  current(): RoutingTable | undefined;
  /** Calls `listener` after every change; returns a function that removes it. */
  onChange(listener: (table: RoutingTable) => void): () => void;
}

/**
 * A routing table that is set from outside: a fixed one, or one fed by watches. A ring
 * older than the one it holds is ignored, so that a late watch event never moves it back.
 */
export class RingView implements RingSource {
  private ring: Ring | undefined;
  private addresses: ReadonlyMap<string, string>;
  private readonly listeners = new Set<(table: RoutingTable) => void>();

  constructor(initial: { ring?: Ring; addresses?: Iterable<readonly [string, string]> } = {}) {
    this.ring = initial.ring;
    this.addresses = new Map(initial.addresses ?? []);
  }

  current(): RoutingTable | undefined {
    if (this.ring === undefined) return undefined;

    return { ring: this.ring, addresses: this.addresses };
  }

  onChange(listener: (table: RoutingTable) => void): () => void {
    this.listeners.add(listener);

    return () => this.listeners.delete(listener);
  }

  /** Takes `ring` unless it is older than the ring held. */
  setRing(ring: Ring): void {
    if (this.ring !== undefined && ring.epoch <= this.ring.epoch) return;
    this.ring = ring;
    this.notify();
  }

  /** Replaces the shards' addresses, e.g. from a membership watch. */
  setAddresses(shards: Iterable<{ readonly shardId: string; readonly address: string }>): void {
    const next = new Map<string, string>();
    for (const { shardId, address } of shards) next.set(shardId, address);
    if (sameEntries(next, this.addresses)) return;

    this.addresses = next;
    this.notify();
  }

  private notify(): void {
    const table = this.current();
    if (table === undefined) return;
    for (const listener of this.listeners) listener(table);
  }
}

function sameEntries(a: ReadonlyMap<string, string>, b: ReadonlyMap<string, string>): boolean {
  if (a.size !== b.size) return false;
  for (const [key, value] of a) if (b.get(key) !== value) return false;

  return true;
}
