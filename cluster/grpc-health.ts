/** A client of the standard gRPC health service (grpc.health.v1) every speedlayer server runs. */
import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';

type HealthClient = grpc.Client & {
  Check(
    request: { service: string },
    options: grpc.CallOptions,
    callback: grpc.requestCallback<{ status: string }>,
  ): grpc.ClientUnaryCall;
};

/**
 * The serving status (`SERVING`, `NOT_SERVING` ...) the server at `address` reports for
 * `service` ('' for the server as a whole). Rejects with the gRPC error when the server
 * cannot be reached or does not know the service (NOT_FOUND).
 */
export async function checkHealth(
  address: string,
  service: string,
  deadlineMs = 5_000,
): Promise<string> {
  const Health = grpc.makeClientConstructor(healthService, 'Health');
  const health = new Health(address, grpc.credentials.createInsecure()) as unknown as HealthClient;

  try {
    const response = await new Promise<{ status: string }>((resolve, reject) => {
      health.Check({ service }, { deadline: Date.now() + deadlineMs }, (error, answer) =>
        answer === undefined ? reject(error) : resolve(answer),
      );
    });

    return response.status;
  } finally {
    health.close();
  }
}
