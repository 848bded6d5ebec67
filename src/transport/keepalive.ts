/**
 * gRPC keepalive for every speedlayer channel and server: HTTP/2 pings on each
 * connection, so that a peer that vanished without closing its connection (a node lost
 * with its pod, a paused process, a network partition) fails the long calls it carried
 * (WatchVersions, SendStream) within seconds instead of leaving them open for good.
 *
 * Clients ping only while they have calls open (gRPC's default), and servers built on
 * grpc-js accept pings at any rate. Servers ping their clients too, so that a stream to
 * a client that is gone is cancelled and stops polling the warehouse.
 */
import type * as grpc from '@grpc/grpc-js';

/** A ping after this long without one, on connections with calls open. */
export const CLIENT_KEEPALIVE_TIME_MS = 20_000;
/** How long a ping may go unanswered before the connection is closed. */
export const KEEPALIVE_TIMEOUT_MS = 10_000;
/** A server pings each client connection this often. */
export const SERVER_KEEPALIVE_TIME_MS = 30_000;

export const CLIENT_KEEPALIVE_OPTIONS: grpc.ChannelOptions = {
  'grpc.keepalive_time_ms': CLIENT_KEEPALIVE_TIME_MS,
  'grpc.keepalive_timeout_ms': KEEPALIVE_TIMEOUT_MS,
};

export const SERVER_KEEPALIVE_OPTIONS: grpc.ServerOptions = {
  'grpc.keepalive_time_ms': SERVER_KEEPALIVE_TIME_MS,
  'grpc.keepalive_timeout_ms': KEEPALIVE_TIMEOUT_MS,
};
