/**
 * Clients of the standard gRPC services a speedlayer server runs beside its own: health
 * checking (grpc.health.v1) and server reflection (grpc.reflection.v1), and grpcurl when
 * it is installed.
 */
import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { promisify } from 'node:util';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

export { checkHealth } from '../../cluster/grpc-health.js';

interface ReflectionResponse {
  readonly list_services_response: { readonly service: readonly { name: string }[] } | null;
}

type ReflectionClient = grpc.Client & {
  ServerReflectionInfo(): grpc.ClientDuplexStream<{ list_services: string }, ReflectionResponse>;
};

/** Asks the server's grpc.reflection.v1 service which services it has, sorted. */
export async function listServices(address: string): Promise<string[]> {
  const index = createRequire(import.meta.url).resolve('@grpc/reflection');
  const definition = protoLoader.loadSync(
    path.resolve(path.dirname(index), '../proto/grpc/reflection/v1/reflection.proto'),
    { keepCase: true, defaults: true, oneofs: true },
  );
  const Reflection = grpc.loadPackageDefinition(definition).grpc as grpc.GrpcObject;
  const Client = ((Reflection.reflection as grpc.GrpcObject).v1 as grpc.GrpcObject)
    .ServerReflection as grpc.ServiceClientConstructor;
  const client = new Client(
    address,
    grpc.credentials.createInsecure(),
  ) as unknown as ReflectionClient;

  try {
    const call = client.ServerReflectionInfo();
    const response = new Promise<ReflectionResponse>((resolve, reject) => {
      call.once('data', resolve);
      call.once('error', reject);
    });
    call.write({ list_services: '*' });
    const answer = await response;
    call.end();

    return (answer.list_services_response?.service ?? []).map((s) => s.name).sort();
  } finally {
    client.close();
  }
}

/** Whether a `grpcurl` binary is on PATH; tests that need it skip otherwise. */
export function hasGrpcurl(): boolean {
  const dirs = (process.env.PATH ?? '').split(path.delimiter);

  return dirs.some((dir) => {
    try {
      accessSync(path.join(dir, 'grpcurl'), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** What `grpcurl -plaintext ADDRESS list` prints, one service a line. */
export async function grpcurlList(address: string): Promise<string[]> {
  const { stdout } = await promisify(execFile)('grpcurl', ['-plaintext', address, 'list']);

  return stdout.split('\n').filter((line) => line !== '');
}
