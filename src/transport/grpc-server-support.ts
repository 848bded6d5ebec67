/**
 * What every speedlayer gRPC server does alike: listen on an address, stop within a
 * grace time, and describe its contracts (with the health contract) for reflection.
 */
import path from 'node:path';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';

import { PROTO_DIR, PROTO_LOADER_OPTIONS } from './proto.js';

/**
 * Listens on `address` without TLS and resolves with the bound `host:port` (the port the
 * system picked when asked for port 0). On failure the server is shut down and the
 * error `toError` makes of the reason is thrown.
 */
export function bindInsecure(
  server: grpc.Server,
  address: string,
  toError: (message: string, cause: Error) => Error,
): Promise<string> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (error, port) => {
      if (error !== null) {
        server.forceShutdown();
        reject(toError(`cannot listen on ${address}: ${error.message}`, error));
        return;
      }

      resolve(`${address.slice(0, address.lastIndexOf(':'))}:${port}`);
    });
  });
}

/** Refuses new calls, waits for those in flight for up to `graceMs`, then cancels them. */
export function shutdownWithin(server: grpc.Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const force = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(force);
      resolve();
    });
  });
}

const reflected = new Map<string, protoLoader.PackageDefinition>();

/** The given contracts (relative to `PROTO_DIR`) and the health contract, for reflection. */
export function reflectionDefinition(protoFiles: readonly string[]): protoLoader.PackageDefinition {
  const files = [...new Set(protoFiles)].sort();
  const key = files.join('|');
  let definition = reflected.get(key);
  if (definition === undefined) {
    definition = protoLoader.loadSync([...files, 'health/v1/health.proto'], {
      ...PROTO_LOADER_OPTIONS,
      includeDirs: [PROTO_DIR, path.resolve(path.dirname(healthProtoPath), '../..')],
    });
    reflected.set(key, definition);
  }

  return definition;
}
