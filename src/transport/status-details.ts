/**
 * The trailer that carries a failed call's ErrorDetail (common.proto), as gRPC's richer
 * error model has it: `grpc-status-details-bin` holds a serialized google.rpc.Status
 * whose `details` hold one google.protobuf.Any with the ErrorDetail. Generic gRPC tools
 * still read the status code and message; speedlayer's clients read the detail.
 */
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';

import {
  PROTO_PACKAGE,
  WIRE_CONVERSION_OPTIONS,
  loadSpeedlayerRoot,
  type ErrorDetailWire,
} from './proto.js';

/** The trailer that holds a serialized google.rpc.Status. */
export const STATUS_DETAILS_KEY = 'grpc-status-details-bin';

/** The type URL of an ErrorDetail packed in a google.protobuf.Any. */
export const ERROR_DETAIL_TYPE_URL = `type.googleapis.com/${PROTO_PACKAGE}.ErrorDetail`;

interface RpcStatus {
  readonly code: number;
  readonly message: string;
  readonly details: readonly { readonly type_url: string; readonly value: Uint8Array }[];
}

interface DetailTypes {
  readonly Status: protobuf.Type;
  readonly ErrorDetail: protobuf.Type;
}

let detailTypes: DetailTypes | undefined;

/**
 * google.rpc.Status and google.protobuf.Any are declared here rather than loaded from
 * googleapis: their three and two fields are all the trailer needs.
 */
function types(): DetailTypes {
  if (detailTypes !== undefined) {
    return detailTypes;
  }

  const rpc = protobuf.Root.fromJSON({
    nested: {
      google: {
        nested: {
          protobuf: {
            nested: {
              Any: {
                fields: { type_url: { type: 'string', id: 1 }, value: { type: 'bytes', id: 2 } },
              },
            },
          },
          rpc: {
            nested: {
              Status: {
                fields: {
                  code: { type: 'int32', id: 1 },
                  message: { type: 'string', id: 2 },
                  details: { rule: 'repeated', type: 'google.protobuf.Any', id: 3 },
                },
              },
            },
          },
        },
      },
    },
  });
  detailTypes = {
    Status: rpc.lookupType('google.rpc.Status'),
    ErrorDetail: loadSpeedlayerRoot().lookupType(`${PROTO_PACKAGE}.ErrorDetail`),
  };

  return detailTypes;
}

/** Trailing metadata that carries `detail` for a call failing with `code`. */
export function errorDetailTrailer(code: grpc.status, detail: ErrorDetailWire): grpc.Metadata {
  const { Status, ErrorDetail } = types();
  const value = ErrorDetail.encode(ErrorDetail.fromObject(detail)).finish();
  const status: RpcStatus = {
    code,
    message: detail.message,
    details: [{ type_url: ERROR_DETAIL_TYPE_URL, value }],
  };
  const metadata = new grpc.Metadata();
  metadata.set(STATUS_DETAILS_KEY, Buffer.from(Status.encode(status).finish()));

  return metadata;
}

/** The ErrorDetail in a failed call's trailers, or undefined when none decodes. */
export function readErrorDetail(metadata: grpc.Metadata | undefined): ErrorDetailWire | undefined {
  const [bytes] = metadata?.get(STATUS_DETAILS_KEY) ?? [];
  if (!(bytes instanceof Uint8Array)) {
    return undefined;
  }

  try {
    const { Status, ErrorDetail } = types();
    const status = Status.decode(bytes) as unknown as RpcStatus;
    const packed = status.details.find((any) => any.type_url === ERROR_DETAIL_TYPE_URL);
    if (packed === undefined) {
      return undefined;
    }

    const detail = ErrorDetail.decode(packed.value);

    return ErrorDetail.toObject(detail, WIRE_CONVERSION_OPTIONS) as ErrorDetailWire;
  } catch {
    // A trailer that does not decode must not hide the status it came with.
    return undefined;
  }
}
