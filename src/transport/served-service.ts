/**
 * A gRPC service that a server hosts beside its own, on the same port: a shard process
 * serves Ingest, Query and Coordinator.Status next to Shard, so that one address takes
 * events, queries and status calls. The server lists it in health checking and
 * reflection.
 */
import type * as grpc from '@grpc/grpc-js';

export interface ServedService {
  /** Fully qualified name, e.g. `speedlayer.v1.Ingest`: what health and reflection list. */
  readonly name: string;
  /** Its proto file relative to the proto folder, e.g. `speedlayer/v1/ingest.proto`. */
  readonly protoFile: string;
  /** Adds the service's handlers to the server. */
  readonly register: (server: grpc.Server) => void;
  /** What health checks answer at first. @default true */
  readonly serving?: boolean;
  /** Called once when the server starts to drain, before it waits for calls in flight. */
  readonly drain?: () => void;
}
